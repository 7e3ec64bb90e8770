# The walkstream image: the trainer, and any `walkstream` command next to the deployment
# (e.g. `docker compose run --rm trainer similar 42`). Build context: the repository root.
FROM python:3.11.16-slim-bookworm

ENV PYTHONUNBUFFERED=1

RUN set -eux; \
    groupadd --system --gid 10001 walkstream; \
    useradd --system --uid 10001 --gid walkstream --no-create-home \
        --home-dir /var/lib/walkstream --shell /usr/sbin/nologin walkstream

COPY pyproject.toml README.md /tmp/walkstream/
COPY streaming /tmp/walkstream/streaming
COPY batch /tmp/walkstream/batch
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eux; \
    pip install --disable-pip-version-check /tmp/walkstream; \
    rm -rf /tmp/walkstream

COPY docker/probe.py /opt/walkstream/probe.py

# The trainer's corpus and checkpoints live on the trainer-state volume (compose.yaml); a new
# named volume takes this directory's owner.
RUN set -eux; \
    mkdir -p /var/lib/walkstream/trainer; \
    chown -R walkstream:walkstream /var/lib/walkstream

ENV WALKSTREAM_RUNTIME__HOME=/var/lib/walkstream

USER walkstream
WORKDIR /var/lib/walkstream
ENTRYPOINT ["walkstream"]
CMD ["trainer"]
