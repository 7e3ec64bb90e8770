"""Item vectors, and what both the stream and batch do with them.

The `Embeddings` type, Word2Vec training with walkstream's settings, and readable item labels
with the nearest-neighbour table. The trainer, the plot, the demo and `batch` all import these;
nothing here imports `batch`.
"""

__all__: list[str] = []
