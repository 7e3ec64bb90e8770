# The Flink image of walkstream: JobManager, TaskManagers and the job submitter.
# Build context: the repository root (compose.yaml: context ..).
#
# The official image is Ubuntu 24.04 (eclipse-temurin:17-jre-noble), whose Python is 3.12
# (walkstream needs >= 3.11; apache-flink 2.2.1 and pemja publish cp312 wheels). PyFlink's
# thread mode embeds CPython in the TaskManager's JVM, so libpython must be installed too.

# The job's Java functions (streaming/runtime/java), compiled against the Flink of the image
# it runs in; `make setup` builds the same source with Maven (streaming/runtime/pom.xml). The
# image has a JRE only: the compiler stays in this stage.
FROM flink:2.2.1-scala_2.12-java17 AS functions
COPY streaming/runtime/java /build/java
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends openjdk-17-jdk-headless; \
    find /build/java -name '*.java' > /build/sources; \
    javac --release 17 -cp '/opt/flink/lib/*' -d /build/classes @/build/sources; \
    jar cf /build/walkstream-functions.jar -C /build/classes .

FROM flink:2.2.1-scala_2.12-java17

ARG PYTHON_VERSION=3.12
# Keep in step with flink.kafka.connector.version in streaming/runtime/pom.xml (the test checks).
ARG KAFKA_CONNECTOR_VERSION=5.0.0-2.2
# SHA-1 as published on Maven Central; SHA-256 of the same file.
ARG KAFKA_CONNECTOR_SHA1=7bf2ded1144cb8aece05adcaccbc81b2ac3ef339
ARG KAFKA_CONNECTOR_SHA256=5605c691d11a501382c383fecba37a7a552467da5ab7ba904ef5d6f3d62c5616

USER root

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        "python${PYTHON_VERSION}" "python${PYTHON_VERSION}-venv" "libpython${PYTHON_VERSION}t64"; \
    rm -rf /var/lib/apt/lists/*; \
    "python${PYTHON_VERSION}" -m venv /opt/walkstream/venv

# The connector jar and the function where walkstream's settings look for them:
# <runtime.jars_dir>/flink/*.jar.
RUN set -eux; \
    jar="flink-sql-connector-kafka-${KAFKA_CONNECTOR_VERSION}.jar"; \
    mkdir -p /opt/walkstream/jars/flink; \
    curl -fsSL --retry 3 -o "/opt/walkstream/jars/flink/${jar}" \
        "https://repo1.maven.org/maven2/org/apache/flink/flink-sql-connector-kafka/${KAFKA_CONNECTOR_VERSION}/${jar}"; \
    echo "${KAFKA_CONNECTOR_SHA1}  /opt/walkstream/jars/flink/${jar}" | sha1sum -c -; \
    echo "${KAFKA_CONNECTOR_SHA256}  /opt/walkstream/jars/flink/${jar}" | sha256sum -c -
COPY --from=functions /build/walkstream-functions.jar /opt/walkstream/jars/flink/

# walkstream and its dependencies (apache-flink == the image's Flink version: the test checks).
COPY pyproject.toml README.md /tmp/walkstream/
COPY streaming /tmp/walkstream/streaming
COPY batch /tmp/walkstream/batch
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eux; \
    /opt/walkstream/venv/bin/pip install --disable-pip-version-check /tmp/walkstream; \
    rm -rf /tmp/walkstream

COPY docker/probe.py /opt/walkstream/probe.py

# flink-python on the cluster's classpath (the image keeps it in opt/): shipped per job instead,
# its embedded interpreter (pemja) loads once per JVM, so on Java 17 the second Python job on
# a TaskManager fails (NoSuchFieldException: loadedLibraryNames). README: standalone cluster.
RUN cp /opt/flink/opt/flink-python-*.jar /opt/flink/lib/

# Checkpoints and savepoints live on the flink-state volume (compose.yaml); a new named volume
# takes this directory's owner, so the flink user can write to it.
RUN set -eux; \
    mkdir -p /var/lib/walkstream/flink/checkpoints /var/lib/walkstream/flink/savepoints; \
    chown -R flink:flink /var/lib/walkstream

# The venv first: `python` and `walkstream` are ours; `flink` stays /opt/flink/bin/flink.
ENV PATH=/opt/walkstream/venv/bin:$PATH \
    WALKSTREAM_RUNTIME__HOME=/var/lib/walkstream \
    WALKSTREAM_RUNTIME__JARS_DIR=/opt/walkstream/jars

USER flink
