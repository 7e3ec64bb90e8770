"""Everything walkstream keeps in Redis: connection, key layout, publish protocol, client."""

from streaming.store.connection import connect

__all__ = ["connect"]
