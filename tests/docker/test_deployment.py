"""Static checks of the Docker Compose deployment in docker/ (no Docker engine, no network).

Compose is read the way Docker Compose reads it: YAML (anchors and merge keys), then
`${VAR:-default}` / `${VAR:?message}` interpolation of every value, without the caller's
environment. Each service's walkstream settings are then loaded by `load_settings` from the
variables its image and its `environment` give it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest

# PyYAML is required by apache-beam, which apache-flink (pinned in pyproject.toml) requires.
import yaml
from pydantic import BaseModel, SecretStr

from streaming.cli import _parser
from streaming.config import ENV_PREFIX, LOOPBACK_HOSTS, Settings, load_settings, split_host_port
from streaming.job.positions import parse_start

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SERVICES = {"kafka", "redis", "jobmanager", "taskmanager", "job-submitter", "trainer"}
FLINK_SERVICES = ("jobmanager", "taskmanager", "job-submitter")
ONE_SHOT = "job-submitter"
# Who must wait for whom to be healthy.
NEEDS = {
    "taskmanager": {"jobmanager"},
    "job-submitter": {"kafka", "jobmanager", "taskmanager"},
    "trainer": {"kafka", "redis"},
}
PROBE_SOURCE = "docker/probe.py"


# --- reading Compose -----------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def placeholder(name: str) -> str:
    return f"placeholder-{name.lower()}"


def interpolate(text: str, required: set[str]) -> str:
    """Compose's interpolation with no variable set: defaults apply, required variables get
    a placeholder (and are recorded), a variable with neither is a mistake."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        if op in {":-", "-"}:
            return arg
        if op in {":?", "?"}:
            required.add(name)
            return placeholder(name)
        raise AssertionError(
            f"${{{name}}} has no default and is not required: unset, Compose makes it empty"
        )

    return _VARIABLE.sub(replace, text)


def interpolate_all(node: Any, required: set[str]) -> Any:
    if isinstance(node, dict):
        return {key: interpolate_all(value, required) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_all(value, required) for value in node]
    if isinstance(node, str):
        return interpolate(node, required)
    return node


@dataclass(frozen=True)
class Compose:
    services: dict[str, dict[str, Any]]
    volumes: dict[str, Any]
    required: frozenset[str]


@pytest.fixture(scope="module")
def compose() -> Compose:
    document = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    required: set[str] = set()
    resolved = interpolate_all(document, required)
    return Compose(resolved["services"], resolved.get("volumes") or {}, frozenset(required))


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "write environment as a mapping"
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def split_image(image: str) -> tuple[str, str]:
    name, _, digest = image.partition("@")
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        return name, digest
    return repository, tag


def is_pinned(tag: str) -> bool:
    """A version tag or a digest: not empty, not `latest`, with a version number in it."""
    return tag != "latest" and bool(re.search(r"\d", tag))


def named_mounts(service: Mapping[str, Any], compose: Compose) -> dict[PurePosixPath, str]:
    """Mount target -> named volume; anything else (a bind mount) fails."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        target = rest.split(":")[0]
        assert source in compose.volumes, f"{volume}: not a declared named volume"
        mounts[PurePosixPath(target)] = source
    return mounts


def volume_holding(path: Path | PurePosixPath, mounts: Mapping[PurePosixPath, str]) -> str | None:
    path = PurePosixPath(path)
    for target, name in mounts.items():
        if path == target or target in path.parents:
            return name
    return None


# --- reading Dockerfiles -------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped (no parser directives,
    no heredocs: these Dockerfiles use neither)."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line:
            keyword, _, args = line.partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip()))
    return instructions


def assignments(args: str) -> dict[str, str]:
    """ENV / ARG arguments: KEY=VALUE pairs (or the legacy `ENV KEY VALUE`)."""
    tokens = shlex.split(args)
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: " ".join(tokens[1:])}
    return dict(token.partition("=")[::2] for token in tokens)


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    instructions: list[Instruction]

    def args_of(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def assigned(self, keyword: str) -> dict[str, str]:
        merged: dict[str, str] = {}
        for args in self.args_of(keyword):
            merged |= assignments(args)
        return merged

    def bases(self) -> list[str]:
        return [args.split()[0] for args in self.args_of("FROM")]

    def copies(self) -> Iterator[tuple[list[str], str]]:
        """(sources, destination) of each COPY/ADD from the build context."""
        for instruction in self.instructions:
            if instruction.keyword not in {"COPY", "ADD"}:
                continue
            args = instruction.args
            tokens = json.loads(args) if args.startswith("[") else shlex.split(args)
            if any(token.startswith("--from=") for token in tokens):
                continue
            paths = [token for token in tokens if not token.startswith("--")]
            yield paths[:-1], paths[-1]

    def exec_form(self, keyword: str) -> list[str]:
        (args,) = self.args_of(keyword)[-1:] or ["[]"]
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(item) for item in value]

    def walkstream_env(self) -> dict[str, str]:
        env = self.assigned("ENV")
        return {key: value for key, value in env.items() if key.startswith(ENV_PREFIX)}

    def copied_to(self, source: str) -> str:
        for sources, destination in self.copies():
            if source in sources:
                return destination
        raise AssertionError(f"{self.path.name} does not copy {source}")


def dockerfile_of(service: Mapping[str, Any]) -> Dockerfile:
    build = service["build"]
    path = (DOCKER / build["context"] / build["dockerfile"]).resolve()
    return Dockerfile(path, parse_dockerfile(path))


def dockerfiles() -> list[Path]:
    return sorted(DOCKER.glob("*.Dockerfile"))


def dockerignored(path: str) -> bool:
    """Docker's .dockerignore rules (last match wins; a match on a parent directory counts)."""
    ignored = False
    parts = PurePosixPath(path).parts
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = re.escape(pattern.lstrip("!").strip("/"))
        regex = regex.replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


# --- project pins --------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned(requirement: str) -> str:
    for dependency in pyproject()["project"]["dependencies"]:
        name, _, version = dependency.partition("==")
        if name.strip() == requirement:
            return version.strip()
    raise AssertionError(f"{requirement} is not pinned with == in pyproject.toml")


def pom_property(name: str) -> str:
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    tree = ElementTree.parse(ROOT / "streaming" / "runtime" / "pom.xml")
    element = tree.find(f"m:properties/m:{name}", namespace)
    assert element is not None, f"pom.xml has no property {name}"
    assert element.text, f"pom.xml: {name} is empty"
    return element.text.strip()


def python_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    assert match, f"no Python version in {text!r}"
    return int(match[1]), int(match[2])


# --- settings of a service -----------------------------------------------------------------


def walkstream_variables(service: Mapping[str, Any]) -> dict[str, str]:
    """What a service's processes see: its image's ENV, overridden by its environment."""
    image_env = dockerfile_of(service).walkstream_env() if "build" in service else {}
    own = {k: v for k, v in environment(service).items() if k.startswith(ENV_PREFIX)}
    return image_env | own


def settings_from(variables: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    with monkeypatch.context() as patch:
        for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
            patch.delenv(name)
        for name, value in variables.items():
            patch.setenv(name, value)
        return load_settings()


def setting(settings: Settings, variable: str) -> Any:
    node: Any = settings
    for part in variable.removeprefix(ENV_PREFIX).lower().split("__"):
        assert isinstance(node, BaseModel), f"{variable}: {part!r} is below a value"
        assert part in type(node).model_fields, (
            f"{variable}: {part!r} is not a setting (pydantic-settings ignores it silently)"
        )
        node = getattr(node, part)
    return node


def took_effect(value: Any, text: str) -> bool:
    if isinstance(value, SecretStr):
        return value.get_secret_value() == text
    if isinstance(value, bool):
        return str(value).lower() == text.lower()
    if isinstance(value, int | float):
        return float(value) == float(text)
    return str(value) == text


@pytest.fixture(scope="module")
def service_settings(compose: Compose) -> dict[str, Settings]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {
            name: settings_from(walkstream_variables(service), monkeypatch)
            for name, service in compose.services.items()
            if walkstream_variables(service)
        }


def flink_properties(service: Mapping[str, Any]) -> dict[str, str]:
    """FLINK_PROPERTIES as the image's entrypoint reads it: per line, whitespace removed,
    split at the first ':'."""
    properties = {}
    for line in environment(service).get("FLINK_PROPERTIES", "").splitlines():
        compact = "".join(line.split())
        if compact:
            key, _, value = compact.partition(":")
            properties[key] = value
    return properties


def load_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("walkstream_probe", ROOT / PROBE_SOURCE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def probe_calls(words: list[str], probe_path: str) -> Iterator[tuple[str, list[str]]]:
    """(mode, arguments) of each `python PROBE MODE ARGS...` in a command or shell script."""
    for index, word in enumerate(words):
        if word == probe_path:
            rest = [*words[index + 1 :], ";"]
            end = min(rest.index(op) for op in ("||", "&&", ";", "|") if op in rest)
            yield rest[0], rest[1:end]


# --- Compose -------------------------------------------------------------------------------


def test_compose_has_exactly_the_deployment_services(compose: Compose) -> None:
    assert set(compose.services) == SERVICES


def test_every_image_is_pinned(compose: Compose) -> None:
    version = pyproject()["project"]["version"]
    for name, service in compose.services.items():
        assert "image" in service, f"{name}: name the image (else Compose tags it latest)"
        _, tag = split_image(service["image"])
        assert is_pinned(tag), f"{name}: unpinned image {service['image']!r}"
        if "build" in service:
            assert tag == version, f"{name}: tag built images with the package version"
    assert compose.services["kafka"]["image"] == f"apache/kafka:{pom_property('kafka.version')}"
    redis = compose.services["redis"]["image"]
    assert re.fullmatch(r"redis:8\.0\.\d+(-[a-z]+)?", redis), f"{redis}: not Redis 8.0.x"
    flink = {name: compose.services[name] for name in FLINK_SERVICES}
    assert len({(s["image"], json.dumps(s["build"], sort_keys=True)) for s in flink.values()}) == 1


def test_builds_use_the_repository_as_context_with_existing_dockerfiles(
    compose: Compose,
) -> None:
    built = {name: s for name, s in compose.services.items() if "build" in s}
    assert set(built) == {*FLINK_SERVICES, "trainer"}
    for name, service in built.items():
        context = (DOCKER / service["build"]["context"]).resolve()
        assert context == ROOT, f"{name}: build context {context}"
        assert (context / service["build"]["dockerfile"]).is_file(), name
    kept_out_of_context = [
        ".git/HEAD",
        ".venv/bin/python",
        ".walkstream/jars",
        "streaming/__pycache__/cli.cpython-311.pyc",
        "docker/.env",
    ]
    for kept_out in kept_out_of_context:
        assert dockerignored(kept_out), f".dockerignore lets {kept_out} into the build context"


def test_every_long_running_service_has_a_healthcheck(compose: Compose) -> None:
    for name, service in compose.services.items():
        if name == ONE_SHOT:
            assert service.get("restart") == "no"
            assert "healthcheck" not in service
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name}: no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert service.get("restart") == "unless-stopped", name


def test_health_probes_exist_with_their_arguments(compose: Compose) -> None:
    modes = load_probe().MODES
    seen = set()
    for name, service in compose.services.items():
        if "build" not in service:
            continue
        probe_path = dockerfile_of(service).copied_to(PROBE_SOURCE)
        words = list(service.get("healthcheck", {}).get("test", []))
        if name == ONE_SHOT:
            words = shlex.split(service["command"][-1].replace("\\\n", " "))
        for mode, arguments in probe_calls(words, probe_path):
            assert mode in modes, f"{name}: probe has no mode {mode!r}"
            count = modes[mode].__code__.co_argcount
            assert len(arguments) == count, f"{name}: {mode} takes {count} arguments"
            seen.add(mode)
    assert seen == set(modes)


def test_dependencies_wait_for_healthy_services(compose: Compose) -> None:
    for name, service in compose.services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: use depends_on with conditions"
        assert NEEDS.get(name, set()) <= set(depends), f"{name} must wait for {NEEDS[name]}"
        for target, spec in depends.items():
            assert target in compose.services, f"{name} depends on unknown {target}"
            assert spec.get("condition") == "service_healthy", f"{name} -> {target}"
            assert "healthcheck" in compose.services[target], f"{target} has no healthcheck"


def test_volumes_are_named_declared_and_used(compose: Compose) -> None:
    used = set()
    for service in compose.services.values():
        used |= set(named_mounts(service, compose).values())
    assert used == set(compose.volumes)
    kafka = compose.services["kafka"]
    for log_dir in environment(kafka)["KAFKA_LOG_DIRS"].split(","):
        assert volume_holding(PurePosixPath(log_dir), named_mounts(kafka, compose)), log_dir
    assert volume_holding(PurePosixPath("/data"), named_mounts(compose.services["redis"], compose))


def test_host_ports_are_published_on_loopback_only(compose: Compose) -> None:
    for name, service in compose.services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_redis_requires_the_password_walkstream_uses(compose: Compose) -> None:
    assert "REDIS_PASSWORD" in compose.required
    redis = compose.services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert "--port" not in command  # 6379, where walkstream's redis.url points
    password = command[command.index("--requirepass") + 1]
    assert password == placeholder("REDIS_PASSWORD")
    assert environment(redis)["REDISCLI_AUTH"] == password  # for the healthcheck's redis-cli


# --- walkstream settings -------------------------------------------------------------------


def test_every_walkstream_variable_is_a_setting_that_takes_effect(
    compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = 0
    sources = [dict(walkstream_variables(s)) for s in compose.services.values()]
    sources += [Dockerfile(path, parse_dockerfile(path)).walkstream_env() for path in dockerfiles()]
    for variables in sources:
        settings = settings_from(variables, monkeypatch)
        for variable, text in variables.items():
            assert took_effect(setting(settings, variable), text), f"{variable}={text}"
            checked += 1
    assert checked >= 8


def test_services_reach_kafka_and_redis_by_service_name(
    compose: Compose, service_settings: dict[str, Settings]
) -> None:
    assert set(service_settings) == {*FLINK_SERVICES, "trainer"}
    advertised = environment(compose.services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    listeners = {address.split("://")[1] for address in advertised.split(",")}
    for name, settings in service_settings.items():
        for server in settings.kafka.bootstrap_servers.split(","):
            host, _ = split_host_port(server)
            assert host not in LOOPBACK_HOSTS, f"{name}: {server} is the container itself"
            assert host in compose.services, f"{name}: {server} is no service"
            assert server in listeners, f"{name}: the broker advertises no {server}"
    trainer = service_settings["trainer"]
    assert trainer.redis.host_port == ("redis", 6379)
    assert trainer.redis.password is not None
    assert trainer.redis.password.get_secret_value() == placeholder("REDIS_PASSWORD")


def test_checkpoints_are_on_a_volume_shared_by_the_flink_cluster(
    compose: Compose, service_settings: dict[str, Settings]
) -> None:
    checkpoint_dirs = {service_settings[name].checkpoint_dir for name in FLINK_SERVICES}
    assert len(checkpoint_dirs) == 1
    (checkpoint_dir,) = checkpoint_dirs
    holders = {
        volume_holding(checkpoint_dir, named_mounts(compose.services[name], compose))
        for name in FLINK_SERVICES
    }
    assert None not in holders, "a Flink container keeps checkpoints outside the volume"
    assert len(holders) == 1, f"not one volume: {holders}"
    savepoints = flink_properties(compose.services["jobmanager"])
    savepoint_dir = savepoints["execution.checkpointing.savepoint-dir"].removeprefix("file://")
    mounts = named_mounts(compose.services["jobmanager"], compose)
    assert volume_holding(PurePosixPath(savepoint_dir), mounts) in holders


def test_trainer_state_is_on_a_volume(
    compose: Compose, service_settings: dict[str, Settings]
) -> None:
    mounts = named_mounts(compose.services["trainer"], compose)
    state_dir = service_settings["trainer"].trainer_dir
    assert volume_holding(state_dir, mounts), f"trainer state {state_dir} is on no volume"
    assert service_settings["trainer"].trainer.metrics_port > 0  # the healthcheck reads it


def test_flink_cluster_configuration(
    compose: Compose, service_settings: dict[str, Settings]
) -> None:
    for name in FLINK_SERVICES:
        properties = flink_properties(compose.services[name])
        assert properties["jobmanager.rpc.address"] == "jobmanager"
        # The job fits into one TaskManager's slots.
        slots = int(properties["taskmanager.numberOfTaskSlots"])
        assert slots >= service_settings[name].flink.parallelism
        # Expanded by the entrypoint (envsubst); the taskmanager probe looks for the hostname.
        assert properties["taskmanager.resource-id"] == "${HOSTNAME}"


def test_job_submitter_runs_walkstream_job_on_the_cluster(compose: Compose) -> None:
    submitter = compose.services[ONE_SHOT]
    script = submitter["command"][-1].replace("\\\n", " ")
    (line,) = [line for line in script.splitlines() if "flink run" in line]
    words = shlex.split(line)
    words = words[words.index("run") + 1 :]
    options: dict[str, str | None] = {}
    while words[0].startswith("--"):
        option = words.pop(0)
        options[option] = None if option == "--detached" else words.pop(0)
    venv = re.search(r"-m venv (\S+)", " ".join(dockerfile_of(submitter).args_of("RUN")))
    assert venv, "flink.Dockerfile creates no venv"
    assert options == {
        "--jobmanager": "jobmanager:8081",
        "--detached": None,
        "--pyModule": "streaming.cli",
        "--pyClientExecutable": f"{venv[1]}/bin/python",
        "--pyExecutable": f"{venv[1]}/bin/python",
    }
    assert importlib.util.find_spec("streaming.cli") is not None
    job_args = environment(submitter)["JOB_ARGS"].split()
    assert job_args == ["--from", "committed"]
    assert words == ["job", "$JOB_ARGS"]
    args = _parser().parse_args(["job", *job_args])
    assert args.command == "job"
    parse_start(args.start)
    # The "already running?" guard looks for the name the job is executed under.
    run = (ROOT / "streaming" / "job" / "run.py").read_text()
    assert re.search(r"execute(?:_async)?\(\s*\"walkstream\"", run), (
        "the job is no longer executed as 'walkstream': update the guard in compose.yaml"
    )
    assert "job-running http://jobmanager:8081 walkstream" in script


def test_trainer_image_runs_the_trainer(compose: Compose) -> None:
    trainer = compose.services["trainer"]
    image = dockerfile_of(trainer)
    command = image.exec_form("ENTRYPOINT") + (trainer.get("command") or image.exec_form("CMD"))
    assert command[0] in pyproject()["project"]["scripts"]
    assert _parser().parse_args(command[1:]).command == "trainer"


# --- Dockerfiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda path: path.name)
def test_dockerfile_bases_are_pinned(path: Path) -> None:
    for base in Dockerfile(path, parse_dockerfile(path)).bases():
        _, tag = split_image(base)
        assert "$" not in base, base
        assert is_pinned(tag), f"{path.name}: unpinned base {base}"


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda path: path.name)
def test_dockerfile_copies_exist_in_the_build_context(path: Path) -> None:
    for sources, _ in Dockerfile(path, parse_dockerfile(path)).copies():
        for source in sources:
            assert (ROOT / source).exists(), f"{path.name}: COPY {source} does not exist"
            assert not dockerignored(source), f"{path.name}: .dockerignore drops {source}"


def test_flink_image_matches_the_pinned_flink_and_connector(compose: Compose) -> None:
    image = dockerfile_of(compose.services["jobmanager"])
    *_, base = image.bases()  # the last stage's; the first compiles the Java functions
    repository, tag = split_image(base)
    assert repository == "flink"
    assert re.fullmatch(rf"{re.escape(pinned('apache-flink'))}-scala_2\.12-java17", tag), tag
    arguments = image.assigned("ARG")
    assert arguments["KAFKA_CONNECTOR_VERSION"] == pom_property("flink.kafka.connector.version")
    jars_dir = image.walkstream_env()["WALKSTREAM_RUNTIME__JARS_DIR"]
    (download,) = [run for run in image.args_of("RUN") if "flink-sql-connector-kafka" in run]
    assert f"{jars_dir}/flink/" in download  # where job_jars() looks
    assert any(
        f"/walkstream-functions.jar {jars_dir}/flink/" in copy for copy in image.args_of("COPY")
    )
    assert "sha1sum -c" in download
    assert "sha256sum -c" in download
    # a second Python job on a TaskManager fails unless flink-python is in lib/ (pemja)
    assert any(
        re.search(r"cp /opt/flink/opt/flink-python-\S*\.jar /opt/flink/lib/", run)
        for run in image.args_of("RUN")
    )


@pytest.mark.integration  # resolves the connector jar with Maven when missing
def test_connector_checksums_match_the_jar_setup_installed(
    compose: Compose, installed: Settings
) -> None:
    """`installed` resolves the jar from Maven Central (as `make setup` does) if missing."""
    arguments = dockerfile_of(compose.services["jobmanager"]).assigned("ARG")
    version = arguments["KAFKA_CONNECTOR_VERSION"]
    jar = installed.runtime.jars_dir / "flink" / f"flink-sql-connector-kafka-{version}.jar"
    assert jar.is_file(), f"{jar}: the Dockerfile's connector version is not the one setup installs"
    data = jar.read_bytes()
    assert hashlib.sha1(data).hexdigest() == arguments["KAFKA_CONNECTOR_SHA1"]
    assert hashlib.sha256(data).hexdigest() == arguments["KAFKA_CONNECTOR_SHA256"]


def test_images_have_the_python_walkstream_needs(compose: Compose) -> None:
    needed = python_version(pyproject()["project"]["requires-python"].removeprefix(">="))
    flink = dockerfile_of(compose.services["jobmanager"]).assigned("ARG")["PYTHON_VERSION"]
    (trainer_base,) = dockerfile_of(compose.services["trainer"]).bases()
    repository, tag = split_image(trainer_base)
    assert repository == "python"
    for version in (python_version(flink), python_version(tag)):
        assert version >= needed, f"Python {version} < {needed}"
