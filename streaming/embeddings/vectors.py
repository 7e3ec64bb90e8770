"""`Embeddings`: one vector per item id, each marked trained or cold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Embeddings", "Vectors", "unit_rows"]

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Embeddings:
    """Vectors by item id; `cold[k]` marks a neighbour average rather than a trained vector."""

    item_ids: npt.NDArray[np.int64]
    vectors: Vectors
    cold: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def as_dict(self) -> dict[int, Vectors]:
        return dict(zip(self.item_ids.tolist(), self.vectors, strict=True))


def unit_rows(vectors: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Each row scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: npt.NDArray[np.float64] = vectors / np.where(norms > 0, norms, 1)
    return unit
