"""Writes that survive a crash: fsync the data, rename into place, fsync the directory."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_directory", "write_atomically"]


def fsync_directory(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_atomically(path: Path, content: str | bytes) -> None:
    """Replace `path` with `content` (text as UTF-8): readers see the old content or the new,
    never a mix."""
    temporary = path.with_name(f".{path.name}.tmp")
    data = content.encode() if isinstance(content, str) else content
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)
