"""Where the job starts reading the ratings topic and where a bounded replay stops.

`--from earliest | latest | committed | timestamp:EPOCH_MS | offsets:PARTITION:OFFSET,...`
`--until latest | offsets:PARTITION:OFFSET,...` (exclusive: the replay stops before OFFSET)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from streaming.errors import ConfigError

__all__ = ["Position", "parse_start", "parse_until"]

Kind = Literal["earliest", "latest", "committed", "timestamp", "offsets"]

_DIGITS = re.compile(r"[0-9]{1,19}")  # 19 digits: up to 2**63 - 1
_MAX_LONG = 2**63 - 1  # timestamps and offsets are Java longs
_MAX_PARTITION = 2**31 - 1


@dataclass(frozen=True)
class Position:
    kind: Kind
    timestamp_ms: int | None = None
    offsets: tuple[tuple[int, int], ...] = ()


def _is_number(text: str, limit: int = _MAX_LONG) -> bool:
    """ASCII digits of a value Kafka and Flink can hold: `str.isdigit` also accepts '²'."""
    return _DIGITS.fullmatch(text) is not None and int(text) <= limit


def _parse_offsets(flag: str, text: str) -> tuple[tuple[int, int], ...]:
    pairs = []
    for part in filter(None, text.split(",")):
        partition, sep, offset = part.partition(":")
        if not sep or not _is_number(partition, _MAX_PARTITION) or not _is_number(offset):
            raise ConfigError(
                f"{flag}: expected PARTITION:OFFSET (partition 0..{_MAX_PARTITION}, offset "
                f"0..{_MAX_LONG}), got {part!r}"
            )
        pairs.append((int(partition), int(offset)))
    if not pairs:
        raise ConfigError(f"{flag}: offsets: needs at least one PARTITION:OFFSET")
    if len({p for p, _ in pairs}) != len(pairs):
        raise ConfigError(f"{flag}: a partition is given twice in {text!r}")
    return tuple(sorted(pairs))


def parse_start(text: str) -> Position:
    kind, _, rest = text.partition(":")
    if kind in ("earliest", "latest", "committed") and not rest:
        return Position(kind)  # type: ignore[arg-type]
    if kind == "timestamp" and _is_number(rest):
        return Position("timestamp", timestamp_ms=int(rest))
    if kind == "offsets":
        return Position("offsets", offsets=_parse_offsets("--from", rest))
    raise ConfigError(
        f"--from {text!r}: use earliest, latest, committed, timestamp:EPOCH_MS "
        "or offsets:PARTITION:OFFSET,..."
    )


def parse_until(text: str) -> Position:
    kind, _, rest = text.partition(":")
    if kind == "latest" and not rest:
        return Position("latest")
    if kind == "offsets":
        return Position("offsets", offsets=_parse_offsets("--until", rest))
    raise ConfigError(f"--until {text!r}: use latest or offsets:PARTITION:OFFSET,...")
