"""The bounded-input side of walkstream: the same per-key logic over a ratings file."""

__all__: list[str] = []
