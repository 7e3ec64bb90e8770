"""The local embedded stack: a single-node KRaft Kafka broker and a Redis server on loopback.

Each service runs as a detached process whose PID (and kernel start time, so a reused PID is
never mistaken for ours) is recorded under ``runtime.state_dir/run``; `down` stops only
processes recorded there. Data, configs and logs live under the same state directory, so a
topic written before `down` is still there after `up`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from streaming.config import LOOPBACK_HOSTS, Settings
from streaming.errors import RuntimeServiceError, SetupError
from streaming.kafka_clients import kafka_python_config
from streaming.report import Report

__all__ = ["LocalStack", "ServiceStatus"]

_POLL_S = 0.2
_STOP_TIMEOUT_S = 30.0
_LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    answering: bool
    log: Path

    @property
    def state(self) -> str:
        if self.pid is None:
            return "stopped"
        return "running" if self.answering else "not answering"

    def line(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "-"
        return f"{self.name:<6} {self.state:<14} {self.address:<22} {pid:<10} log {self.log}"


def _process_start_ticks(pid: int) -> int | None:
    """Kernel start time of a live, non-zombie process; None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in {"Z", "X"}:
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    """Collect our exited child, so it does not linger as a zombie that looks alive."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _log_tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-_LOG_TAIL_LINES:])


class _Service(ABC):
    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.runtime.state_dir / self.name
        self.log = settings.runtime.state_dir / "logs" / f"{self.name}.log"
        self._pid_file = settings.runtime.state_dir / "run" / f"{self.name}.pid"

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Ports this service binds, by the setting that chooses each."""

    @abstractmethod
    def prepare(self) -> list[str]:
        """Write configs, initialise storage; return the command that runs the service."""

    @abstractmethod
    def answers(self) -> bool:
        """One quick probe: does the service serve requests right now?"""

    @property
    def address(self) -> str:
        return f"{self.host}:{next(iter(self.ports.values()))}"

    def recorded_pid(self) -> int | None:
        """PID of the process we started, if it is still that process and alive."""
        try:
            record = json.loads(self._pid_file.read_text())
        except (OSError, ValueError):
            return None
        pid = int(record["pid"])
        if _process_start_ticks(pid) != record["start_ticks"]:
            return None
        return pid

    def status(self) -> ServiceStatus:
        pid = self.recorded_pid()
        return ServiceStatus(
            self.name, self.address, pid, pid is not None and self.answers(), self.log
        )

    def start(self, report: Report) -> ServiceStatus:
        if self.recorded_pid() is not None:
            report(f"{self.name}: already running at {self.address}")
            return self._wait_ready(time.monotonic(), report=None)
        if self.host not in LOOPBACK_HOSTS:
            raise RuntimeServiceError(
                f"`walkstream up` starts {self.name} on this machine only, but its address is "
                f"{self.host}: point the setting at 127.0.0.1, or run your own {self.name}"
            )
        for setting, port in self.ports.items():
            if _port_in_use(self.host, port):
                raise RuntimeServiceError(
                    f"port {port} on {self.host} is already in use, so {self.name} cannot start "
                    f"there: stop what holds it, or choose another port with {setting}"
                )
        for directory in (self.state_dir, self.log.parent, self._pid_file.parent):
            directory.mkdir(parents=True, exist_ok=True)
        command = self.prepare()
        began = time.monotonic()
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.state_dir,
            )
        start_ticks = _process_start_ticks(process.pid)
        self._pid_file.write_text(json.dumps({"pid": process.pid, "start_ticks": start_ticks}))
        report(f"{self.name}: starting on {self.address} (pid {process.pid})")
        return self._wait_ready(began, report)

    def _wait_ready(self, began: float, report: Report | None) -> ServiceStatus:
        deadline = began + self.settings.runtime.startup_timeout_s
        while True:
            pid = self.recorded_pid()
            if pid is None:
                _reap_recorded(self._pid_file)
                raise RuntimeServiceError(
                    f"{self.name} exited during start-up; last lines of {self.log}:\n"
                    + _log_tail(self.log)
                )
            if self.answers():
                if report is not None:
                    elapsed = time.monotonic() - began
                    report(f"{self.name}: ready at {self.address} in {elapsed:.1f}s")
                return ServiceStatus(self.name, self.address, pid, True, self.log)
            if time.monotonic() > deadline:
                raise RuntimeServiceError(
                    f"{self.name} (pid {pid}) did not answer within "
                    f"{self.settings.runtime.startup_timeout_s:.0f}s "
                    f"(runtime.startup_timeout_s); see {self.log}"
                )
            time.sleep(_POLL_S)

    def stop(self, report: Report) -> None:
        pid = self.recorded_pid()
        if pid is None:
            self._pid_file.unlink(missing_ok=True)
            return
        report(f"{self.name}: stopping pid {pid}")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while self.recorded_pid() is not None:
            _reap(pid)
            if time.monotonic() > deadline:
                report(
                    f"{self.name}: pid {pid} ignored SIGTERM for {_STOP_TIMEOUT_S:.0f}s; killing"
                )
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + _STOP_TIMEOUT_S
            time.sleep(_POLL_S)
        _reap(pid)
        self._pid_file.unlink(missing_ok=True)


def _reap_recorded(pid_file: Path) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        _reap(int(json.loads(pid_file.read_text())["pid"]))
    pid_file.unlink(missing_ok=True)


def _properties_escaped(value: str) -> str:
    """A value as a Java .properties file reads it back (backslash is its escape)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


class KafkaBroker(_Service):
    """A single-node KRaft broker+controller run from the Maven-resolved jars."""

    name = "kafka"

    @property
    def host(self) -> str:
        return self.settings.kafka.first_server[0]

    @property
    def ports(self) -> dict[str, int]:
        return {
            "kafka.bootstrap_servers": self.settings.kafka.first_server[1],
            "runtime.kafka_controller_port": self.settings.runtime.kafka_controller_port,
        }

    def _classpath(self) -> str:
        jars = self.settings.runtime.jars_dir / "kafka"
        if not any(jars.glob("kafka_*.jar")):
            raise SetupError(f"no Kafka broker jars in {jars}: run `make setup` first")
        return str(jars / "*")

    def server_properties(self) -> dict[str, str]:
        """The broker's configuration: PLAINTEXT on `kafka.bootstrap_servers`' first address.
        A subclass may add listeners (the tests add a SASL_SSL one)."""
        broker_port = self.settings.kafka.first_server[1]
        controller_port = self.settings.runtime.kafka_controller_port
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{broker_port},"
            f"CONTROLLER://{self.host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.state_dir / "data"),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Flink's exactly-once KafkaSink opens transactions of up to 1 h by default.
            "transaction.max.timeout.ms": "3600000",
        }

    def prepare(self) -> list[str]:
        protocol = self.settings.kafka.security_protocol
        if protocol != "PLAINTEXT":
            raise RuntimeServiceError(
                f"`walkstream up` runs a PLAINTEXT broker, but kafka.security_protocol is "
                f"{protocol}: point walkstream at your secured cluster instead of starting one, "
                "or set kafka.security_protocol=PLAINTEXT for the local stack"
            )
        data = self.state_dir / "data"
        properties = self.state_dir / "server.properties"
        properties.touch(mode=0o600)  # a listener's JAAS config may hold passwords
        properties.write_text(
            "".join(
                f"{key}={_properties_escaped(value)}\n"
                for key, value in self.server_properties().items()
            )
        )
        classpath = self._classpath()
        java = self.settings.runtime.java
        log4j = resources.files("streaming.runtime") / "kafka-log4j2.properties"
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            formatted = subprocess.run(
                # "--cluster-id=": an id may start with "-", which a separate argument would
                # turn into an option
                [java, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
                 "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(properties)],
                capture_output=True, text=True,
            )  # fmt: skip
            if formatted.returncode != 0:
                raise RuntimeServiceError(
                    f"formatting Kafka storage in {data} failed:\n"
                    + (formatted.stdout + formatted.stderr)[-2000:]
                )
        return [
            java,
            f"-Xmx{self.settings.runtime.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(properties),
        ]

    def answers(self) -> bool:
        from kafka import KafkaAdminClient
        from kafka.errors import RetriableError

        unreachable = (RetriableError, OSError)
        try:
            admin = KafkaAdminClient(
                **kafka_python_config(self.settings.kafka), request_timeout_ms=3000
            )
        except unreachable:
            return False
        try:
            admin.list_topics()
        except unreachable:
            return False
        finally:
            admin.close()
        return True


def _create_password_file(path: Path) -> None:
    """Write a new random password to `path`, readable by this user only, unless it exists.
    Linked into place complete, so a reader never sees a half-written password."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        return
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    try:
        with contextlib.suppress(FileExistsError):  # another `up` was first: theirs it is
            os.link(staged, path)
    finally:
        staged.unlink()


class RedisServer(_Service):
    """Redis on loopback, with a password: redis.password, else the generated one in
    redis.password_file (see streaming.config.Settings)."""

    name = "redis"

    @property
    def host(self) -> str:
        return self.settings.redis.host_port[0]

    @property
    def ports(self) -> dict[str, int]:
        return {"redis.url": self.settings.redis.host_port[1]}

    def prepare(self) -> list[str]:
        from streaming.store.connection import redis_password

        binary = self.settings.runtime.redis_server
        if not binary.is_file():
            raise SetupError(f"no redis-server at {binary}: run `make setup` first")
        redis = self.settings.redis
        lines = [
            f"bind {self.host}",
            f"port {self.ports['redis.url']}",
            "protected-mode yes",
            f"dir {self.state_dir}",
            "appendonly yes",
            'save ""',
            f"logfile {self.log}",
            "daemonize no",
        ]
        if redis.password is None and redis.password_file is not None:
            _create_password_file(redis.password_file)
        password = redis_password(redis)
        if password is None:
            raise RuntimeServiceError(
                f"the local Redis needs a password, and redis.password_file "
                f"{redis.password_file} is empty: delete it (`up` then writes a new one), or "
                "set redis.password"
            )
        if redis.username:
            lines += ["user default off", f"user {redis.username} on >{password} ~* &* +@all"]
        else:
            lines.append(f"requirepass {password}")
        conf = self.state_dir / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text("\n".join(lines) + "\n")
        return [str(binary), str(conf)]

    def answers(self) -> bool:
        import redis

        from streaming.store.connection import connect

        try:
            return bool(connect(self.settings.redis, timeout_s=1.0).ping())
        except redis.RedisError:
            return False


class LocalStack:
    """Start, stop and inspect the local services for the settings given."""

    def __init__(self, settings: Settings) -> None:
        self.services: list[_Service] = [KafkaBroker(settings), RedisServer(settings)]

    def up(self, report: Report = print) -> list[ServiceStatus]:
        return [service.start(report) for service in self.services]

    def down(self, report: Report = print) -> None:
        for service in reversed(self.services):
            service.stop(report)

    def status(self) -> list[ServiceStatus]:
        return [service.status() for service in self.services]

    def answering(self) -> bool:
        """Whether Kafka and Redis answer at the configured addresses, whoever runs them."""
        return all(service.answers() for service in self.services)
