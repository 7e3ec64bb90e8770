"""Everything walkstream keeps in Redis: connection, key layout, publish protocol, client."""

from streaming.store.client import EmbeddingClient, VersionView
from streaming.store.connection import connect

__all__ = ["EmbeddingClient", "VersionView", "connect"]
