"""docker/probe.py: the health probes and the submitter's guard, on canned Flink REST answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

PROBE = Path(__file__).resolve().parents[2] / "docker" / "probe.py"

# Shapes of Flink 2.x REST answers (/taskmanagers, /jobs/overview), trimmed.
TASKMANAGERS = {
    "taskmanagers": [
        {"id": "5f0c1d2e3a4b", "path": "pekko.tcp://flink@172.18.0.6:6122/user/rpc/taskmanager_0"},
        {
            "id": "172.18.0.7:41234-9a8b7c",
            "path": "pekko.tcp://flink@172.18.0.7:41234/user/rpc/taskmanager_0",
        },
    ]
}
JOBS = {
    "jobs": [
        {"jid": "a1", "name": "walkstream", "state": "FINISHED"},
        {"jid": "b2", "name": "walkstream", "state": "RESTARTING"},
        {"jid": "c3", "name": "other", "state": "RUNNING"},
        {"jid": "d4", "name": "walkstream", "state": "CANCELED"},
    ]
}


@pytest.fixture
def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("walkstream_probe", PROBE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_taskmanager_is_found_by_its_resource_id_or_address(probe: ModuleType) -> None:
    assert probe.registered(TASKMANAGERS, {"5f0c1d2e3a4b"})
    assert probe.registered(TASKMANAGERS, {"somehost", "172.18.0.7"})
    assert probe.registered(TASKMANAGERS, {"172.18.0.6"})
    assert not probe.registered(TASKMANAGERS, {"5f0c1d2e3a4", "172.18.0.1"})
    assert not probe.registered({"taskmanagers": []}, {"5f0c1d2e3a4b"})


def test_only_unfinished_jobs_of_the_name_count_as_running(probe: ModuleType) -> None:
    assert probe.active_jobs(JOBS, "walkstream") == ["b2"]
    assert probe.active_jobs(JOBS, "missing") == []


def test_job_running_answers_yes_no_or_cannot_tell(
    probe: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = []

    def answer(url: str) -> dict[str, object]:
        asked.append(url)
        return JOBS

    monkeypatch.setattr(probe, "fetch_json", answer)
    assert probe.main(["job-running", "http://jobmanager:8081/", "walkstream"]) == 0
    assert asked == ["http://jobmanager:8081/jobs/overview"]
    assert probe.main(["job-running", "http://jobmanager:8081", "other-job"]) == 1

    def unreachable(url: str) -> object:
        raise probe.ProbeError(f"{url}: connection refused")

    monkeypatch.setattr(probe, "fetch_json", unreachable)
    assert probe.main(["job-running", "http://jobmanager:8081", "walkstream"]) == 3
    # A health probe that cannot ask is unhealthy (1: Docker reserves 2).
    assert probe.main(["jobmanager", "http://jobmanager:8081"]) == 1


def test_trainer_probe_reads_the_metrics_port_from_settings(
    probe: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = []

    def metrics(url: str) -> bytes:
        asked.append(url)
        return b"# HELP walkstream_trainer_version current\nwalkstream_trainer_version 3.0\n"

    monkeypatch.setattr(probe, "fetch", metrics)
    monkeypatch.setenv("WALKSTREAM_TRAINER__METRICS_PORT", "29111")
    assert probe.main(["trainer"]) == 0
    assert asked == ["http://127.0.0.1:29111/metrics"]
    monkeypatch.setattr(probe, "fetch", lambda url: b"python_info 1\n")
    assert probe.main(["trainer"]) == 1
    monkeypatch.setenv("WALKSTREAM_TRAINER__METRICS_PORT", "0")
    assert probe.main(["trainer"]) == 1


def test_unknown_modes_and_wrong_arguments_are_usage_errors(probe: ModuleType) -> None:
    assert probe.main([]) == 1
    assert probe.main(["jobmanagr", "http://jobmanager:8081"]) == 1
    assert probe.main(["taskmanager"]) == 1
