"""Free loopback ports for the services tests and benchmarks start.

A port the kernel hands out for `bind(0)` lies in its ephemeral range, which is also where
every outgoing connection takes its local port: Kafka's own connections, started between our
choosing a port and Redis binding it, can take it first (CI failed that way). So we choose
below the ephemeral range, where only listeners that ask for a port by number go.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
_handed_out: set[int] = set()
# Not the `random` module's generator: a test that seeds it would make every run pick alike.
_chooser = random.SystemRandom()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A loopback port that nothing listens on and no earlier call in this process returned."""
    highest = _ephemeral_start() - 1
    for _ in range(1_000):
        port = _chooser.randint(_LOWEST, highest)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port between {_LOWEST} and {highest}")
