"""A local stack and a running `walkstream job`: what they expose and where the job logs.

Every listening socket of the stack's processes and of the job's process tree (the Python
client, the mini-cluster's JVM, anything they start) must be on loopback; the job's Flink log
must be in the directory it prints, under the runtime home.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streaming.config import Settings
from streaming.runtime import LocalStack
from tests.conftest import poll
from tests.job.jobs import job_world

pytestmark = pytest.mark.integration

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(hex_address: str) -> IPAddress:
    """An address of /proc/net/tcp{,6}: 32-bit words, each in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _listening_sockets() -> dict[int, tuple[IPAddress, int]]:
    """Every listening TCP socket of this network namespace: inode -> (address, port)."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            host, port = fields[1].split(":")
            sockets[int(fields[9])] = (_address(host), int(port, 16))
    return sockets


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except FileNotFoundError:
        return inodes  # the process exited since the tree was listed: it listens on nothing
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _process_tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree = {root}
    while grown := {pid for pid, parent in parents.items() if parent in tree} - tree:
        tree |= grown
    return tree


def _listeners(pids: set[int]) -> list[tuple[int, IPAddress, int]]:
    sockets = _listening_sockets()
    return [
        (pid, *sockets[inode])
        for pid in sorted(pids)
        for inode in _socket_inodes(pid)
        if inode in sockets
    ]


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""  # exited since the tree was listed


def _python_workers(pids: set[int]) -> set[int]:
    """The processes among `pids` that run PyFlink's process-mode Python workers."""
    return {pid for pid in pids if b"pyflink.fn_execution" in _command(pid)}


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_stack_and_a_running_job_listen_on_loopback_and_the_job_logs_where_it_says(
    local_stack: Settings, unique: str, tmp_path: Path, mode: str
) -> None:
    """In process mode (docs/security.md) the JVM's Beam servers for the Python workers
    listen on every interface, and nothing else does."""
    home = tmp_path / "home"
    world = job_world(
        local_stack, unique, tmp_path, **{"runtime.home": home, "flink.python_execution_mode": mode}
    )
    environment = {k: v for k, v in os.environ.items() if k != "FLINK_LOG_DIR"}
    with world.log.open("ab") as log:
        job = subprocess.Popen(
            world.command("--from", "earliest"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=environment,
        )
    try:
        said = poll(
            lambda: re.search(r"Flink's log in (\S+)", world.log.read_text()),
            timeout_s=120,
            what="the job saying where its log is",
        )
        log_dir = Path(said.group(1))
        assert log_dir.parent == home / "state" / "logs"
        assert log_dir.name.startswith("job-")

        def flink_log() -> str:
            return "".join(path.read_text() for path in log_dir.glob("flink-*.log"))

        poll(
            lambda: "switched from INITIALIZING to RUNNING" in flink_log(),
            timeout_s=180,
            what=f"the job's tasks running, in {log_dir}",
        )
        text = flink_log()
        assert "org.apache.flink.runtime.dispatcher.DispatcherRestEndpoint" in text
        rest = re.search(r"Rest endpoint listening at 127\.0\.0\.1:(\d+)", text)
        assert rest is not None
        assert (log_dir / "stderr.log").is_file()
        # The REST API (no authentication) answers, but takes no jars to run.
        api = f"http://127.0.0.1:{rest.group(1)}"
        with urllib.request.urlopen(f"{api}/jobs") as answer:
            assert [job["status"] for job in json.load(answer)["jobs"]] == ["RUNNING"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{api}/jars")
        assert refused.value.code == 404

        if mode == "process":
            poll(
                lambda: _python_workers(_process_tree(job.pid)),
                timeout_s=120,
                what="the job's Python worker processes",
            )
        services = {status.pid for status in LocalStack(local_stack).status()}
        assert None not in services
        job_processes = _process_tree(job.pid)
        listeners = _listeners(job_processes | {pid for pid in services if pid is not None})
        exposed = [entry for entry in listeners if not entry[1].is_loopback]
        if mode == "thread":
            assert exposed == [], f"listening beyond loopback (pid, address, port): {exposed}"
        else:
            assert exposed, "process mode's Beam servers are on loopback: update the docs"
            jvm = {
                p for p in job_processes if _command(p).split(b"\0")[0].split(b"/")[-1] == b"java"
            }
            assert {pid for pid, *_ in exposed} <= jvm, exposed
        # Sanity: the REST API, the blob server and the gateway of the JVM, Kafka's two
        # listeners and Redis were all seen.
        assert len({pid for pid, *_ in listeners} & job_processes) >= 1
        assert len(listeners) >= 6, listeners
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
