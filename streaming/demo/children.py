"""The job and the trainer as the demo's child processes: started with their logs in the
run's directory, checked while the demo waits, and stopped with everything they started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from streaming.config import Settings
from streaming.errors import RuntimeServiceError
from streaming.report import Report

__all__ = ["Children", "wait_for_job"]

_STOP_GRACE_S = 15.0


class Children:
    """The job and the trainer, each in its own process group so that stopping one stops
    everything it started (the job's JVM included)."""

    def __init__(self, run_dir: Path, report: Report) -> None:
        self._run_dir = run_dir
        self._report = report
        self._running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, argv: list[str]) -> None:
        log = self._run_dir / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(
                argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._running[name] = (process, log)
        self._report(f"demo: started the {name} (pid {process.pid}, log {log})")

    def check(self) -> None:
        """Fail with the end of its log if a child has stopped."""
        for name, (process, log) in self._running.items():
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeServiceError(
                    f"the {name} stopped (exit code {process.returncode}); the end of {log}:\n"
                    f"{tail}"
                )

    def stop(self) -> None:
        for process, _ in self._running.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for process, _ in self._running.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self._running.clear()


def _signal_group(process: subprocess.Popen[bytes], which: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, which)


def wait_for_job(settings: Settings, children: Children, wait_s: float, report: Report) -> None:
    """The job is running once it completed a checkpoint: every task is up by then."""
    began = time.monotonic()
    last_report = began
    while not any(settings.checkpoint_dir.glob("*/chk-*")):
        children.check()
        now = time.monotonic()
        if now - began > wait_s:
            raise RuntimeServiceError(
                f"the job did not complete a checkpoint within {wait_s:.0f}s; see its log in "
                f"{settings.checkpoint_dir.parent}"
            )
        if now - last_report >= 5:
            last_report = now
            report(f"  waiting for the job to run (Flink mini-cluster): {now - began:.0f}s")
        time.sleep(0.5)
    report(f"demo: the job runs (first checkpoint after {time.monotonic() - began:.1f}s)")
