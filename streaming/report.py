"""The type of the function every command and service reports its progress lines through."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Report"]

Report = Callable[[str], None]
"""Shows one line to the user (`print` on the command line, a list's `append` in tests)."""
