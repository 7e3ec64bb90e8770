"""walkstream: streaming, incremental item embeddings (Kafka -> PyFlink -> gensim -> Redis)."""

from streaming.config import Settings, load_settings
from streaming.errors import WalkstreamError

__all__ = ["Settings", "WalkstreamError", "load_settings"]
