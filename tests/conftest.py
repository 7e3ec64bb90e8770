"""Shared fixtures: real services on free loopback ports, a fresh topic per test."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from streaming.config import ENV_PREFIX, Settings, load_settings
from streaming.runtime import LocalStack, install_runtime
from tests.ports import free_port

T = TypeVar("T")

# A run started in the background, where the shell ignores SIGINT, would hand that on to every
# command a test starts, and the tests that stop one with SIGINT (as Ctrl-C does) would wait
# for it forever. A handler of our own is reset to the default in each child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Tests build their settings explicitly: a developer's own WALKSTREAM_* must not leak in.
for _name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
    del os.environ[_name]


# Property tests draw the same examples on every run (a failure is reproducible from the log),
# and a busy shared machine neither fails them on time nor on slow generation.
hypothesis_settings.register_profile(
    "walkstream", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("walkstream")

# Fixtures that install (Maven, the Redis build) or start real services: a test that asks for
# one is an integration test, marked or not, so `make test-unit` (-m "not integration") never
# starts a service.
_SERVICE_FIXTURES = frozenset({"installed", "stack_settings", "local_stack"})


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def poll(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    details: Callable[[], object] | None = None,
) -> T:
    """Return the first truthy result of `check`, or fail naming `what` (and what `details`
    returns then, such as a component's report) after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            shown = "" if details is None else f"; {details()}"
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}{shown}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def installed() -> Settings:
    """The runtime `make setup` installed (jars, redis-server); installs it if missing."""
    settings = load_settings()
    install_runtime(settings, report=lambda _: None)
    return settings


@pytest.fixture(scope="session")
def stack_settings(
    installed: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Settings]:
    """Build settings for a private stack: its own home and free ports, the installed binaries."""

    def make(**overrides: Any) -> Settings:
        home: Path = tmp_path_factory.mktemp("home")
        base: dict[str, Any] = {
            "kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}"},
            "redis": {"url": f"redis://127.0.0.1:{free_port()}/0"},
            "runtime": {
                "home": str(home),
                "jars_dir": str(installed.runtime.jars_dir),
                "redis_server": str(installed.runtime.redis_server),
                "kafka_controller_port": free_port(),
                "kafka_heap": "512m",
            },
        }
        for section, values in overrides.items():
            base[section] = {**base.get(section, {}), **values}
        return load_settings(overrides=base)

    return make


@pytest.fixture(scope="session")
def local_stack(stack_settings: Callable[..., Settings]) -> Iterator[Settings]:
    """Kafka and Redis shared by the session's integration tests (tests use their own topics)."""
    settings = stack_settings()
    stack = LocalStack(settings)
    stack.up(report=lambda _: None)
    yield settings
    stack.down(report=lambda _: None)


@pytest.fixture
def unique() -> str:
    """A name no other test uses, for topics, groups and key prefixes."""
    return f"t{uuid.uuid4().hex[:12]}"
