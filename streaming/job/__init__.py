"""The PyFlink job: Kafka sources and sinks, keyed functions, checkpointing, start offsets.

Knows Kafka and Flink; knows nothing of gensim or Redis.
"""

__all__: list[str] = []
