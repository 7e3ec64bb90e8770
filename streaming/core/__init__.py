"""Per-key logic shared by the streaming job and batch: plain Python/NumPy, no Flink.

Events, user sequences and transitions, item out-neighbour counts, the walk step, and the
cold-start neighbour average. The Flink functions and the batch driver both call these.
"""

__all__: list[str] = []
