"""One root exception for walkstream; one subclass per area.

The CLI prints these as one readable message (no traceback): their text must tell the
user what to do.
"""

__all__ = [
    "ConfigError",
    "DataError",
    "ProducerError",
    "RuntimeServiceError",
    "SetupError",
    "StoreError",
    "WalkstreamError",
]


class WalkstreamError(Exception):
    """Root of every error walkstream raises on purpose."""


class ConfigError(WalkstreamError):
    pass


class SetupError(WalkstreamError):
    pass


class RuntimeServiceError(WalkstreamError):
    pass


class DataError(WalkstreamError):
    """An input data file that cannot be read at all (bad rows are counted, not raised)."""


class StoreError(WalkstreamError):
    pass


class ProducerError(WalkstreamError):
    pass
