"""Health probes of the Compose deployment, and the job submitter's "already running?" check.

Runs inside the images with the standard library only (the trainer probe also reads
walkstream's settings), as `python /opt/walkstream/probe.py MODE [ARGS]`:

    jobmanager URL         the JobManager's REST API answers /overview
    taskmanager URL        this container's TaskManager is registered with the JobManager at URL
    trainer                the trainer serves its Prometheus metrics (trainer.metrics_port)
    job-running URL NAME   a job called NAME is running (or starting, restarting, ...) at URL

Exit status: 0 yes/healthy, 1 no/unhealthy (Docker reserves 2), 3 the question could not
be asked (job-running only: the submitter must not submit when it cannot tell).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MODES", "active_jobs", "local_names", "main", "registered"]

TIMEOUT_S = 5.0
# Flink's globally terminal job states; every other state still owns the job's resources.
_TERMINAL = frozenset({"FINISHED", "CANCELED", "FAILED"})


class ProbeError(Exception):
    pass


def fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return bytes(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ProbeError(f"{url}: {exc}") from exc


def fetch_json(url: str) -> Any:
    try:
        return json.loads(fetch(url))
    except json.JSONDecodeError as exc:
        raise ProbeError(f"{url}: not JSON ({exc})") from exc


def local_names() -> set[str]:
    """This container's hostname and addresses: a TaskManager registers under one of them
    (compose.yaml sets taskmanager.resource-id to the hostname)."""
    hostname = socket.gethostname()
    names = {hostname}
    with contextlib.suppress(OSError):
        names |= {str(info[4][0]) for info in socket.getaddrinfo(hostname, None)}
    return names


def registered(taskmanagers: Any, names: Iterable[str]) -> bool:
    """Whether the JobManager's /taskmanagers answer lists a TaskManager of ours."""
    wanted = set(names)
    for manager in taskmanagers.get("taskmanagers", []):
        resource_id = str(manager.get("id", ""))
        path = str(manager.get("path", ""))
        if resource_id in wanted:
            return True
        # Without a configured resource id Flink uses "ADDRESS:PORT-xxxxxx".
        if any(resource_id.startswith(f"{name}:") or f"@{name}:" in path for name in wanted):
            return True
    return False


def active_jobs(overview: Any, name: str) -> list[str]:
    """Ids of the jobs called `name` in a /jobs/overview answer that are not finished."""
    return [
        str(job["jid"])
        for job in overview.get("jobs", [])
        if job.get("name") == name and job.get("state") not in _TERMINAL
    ]


def _jobmanager(url: str) -> int:
    overview = fetch_json(f"{url.rstrip('/')}/overview")
    if "taskmanagers" not in overview:
        raise ProbeError(f"{url}/overview has no 'taskmanagers' field: {overview}")
    print(
        f"jobmanager: {overview['taskmanagers']} taskmanagers, {overview.get('slots-total')} slots"
    )
    return 0


def _taskmanager(url: str) -> int:
    names = local_names()
    if registered(fetch_json(f"{url.rstrip('/')}/taskmanagers"), names):
        return 0
    print(f"taskmanager: none of {sorted(names)} is registered at {url}")
    return 1


def _trainer() -> int:
    from streaming.config import load_settings

    port = load_settings().trainer.metrics_port
    if not port:
        raise ProbeError("trainer.metrics_port is 0: the trainer serves no metrics to probe")
    body = fetch(f"http://127.0.0.1:{port}/metrics").decode("utf-8", "replace")
    if "walkstream_trainer_" not in body:
        raise ProbeError(f"127.0.0.1:{port}/metrics has no walkstream_trainer_ metrics")
    return 0


def _job_running(url: str, name: str) -> int:
    try:
        jobs = active_jobs(fetch_json(f"{url.rstrip('/')}/jobs/overview"), name)
    except ProbeError as exc:
        print(f"job-running: cannot ask the JobManager: {exc}", file=sys.stderr)
        return 3
    if jobs:
        print(f"job-running: {name!r} is already running as {', '.join(jobs)}")
        return 0
    return 1


MODES: dict[str, Callable[..., int]] = {
    "jobmanager": _jobmanager,
    "taskmanager": _taskmanager,
    "trainer": _trainer,
    "job-running": _job_running,
}


def main(argv: list[str]) -> int:
    mode, args = (argv[0], argv[1:]) if argv else ("", [])
    probe = MODES.get(mode)
    if probe is None or len(args) != probe.__code__.co_argcount:
        print(f"usage: probe.py {{{','.join(MODES)}}} [ARGS] (see its docstring)", file=sys.stderr)
        return 1
    try:
        return probe(*args)
    except ProbeError as exc:
        print(f"{mode}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
