"""Word2Vec training on item sequences or walks, with walkstream's training settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from gensim.models import Word2Vec
from gensim.models.callbacks import CallbackAny2Vec

from streaming.config import TrainingSettings
from streaming.embeddings.vectors import Vectors
from streaming.report import Report

__all__ = ["train_word2vec", "trained_vectors"]


class _EpochProgress(CallbackAny2Vec):  # type: ignore[misc]
    def __init__(self, report: Report, epochs: int) -> None:
        self.report, self.epochs, self.epoch = report, epochs, 0

    def on_epoch_end(self, model: Word2Vec) -> None:
        self.epoch += 1
        self.report(f"  word2vec: epoch {self.epoch}/{self.epochs}")


def train_word2vec(
    corpus: Sequence[Sequence[str]],
    settings: TrainingSettings,
    report: Report | None = None,
) -> Word2Vec:
    """Train on a list of token lists (item ids as strings); a list, so it can be re-iterated."""
    logging.getLogger("gensim").setLevel(logging.WARNING)
    callbacks = [_EpochProgress(report, settings.epochs)] if report is not None else []
    model = Word2Vec(
        sentences=corpus,
        vector_size=settings.vector_size,
        window=settings.window,
        sg=int(settings.sg),
        hs=int(settings.hs),
        negative=settings.negative,
        ns_exponent=settings.ns_exponent,
        sample=settings.sample,
        min_count=settings.min_count,
        epochs=settings.epochs,
        alpha=settings.alpha,
        min_alpha=settings.min_alpha,
        workers=settings.workers or os.cpu_count() or 1,
        seed=settings.seed,
        callbacks=callbacks,
    )
    model.callbacks = ()  # they hold a reporting function, which must not be saved
    return model


def trained_vectors(model: Word2Vec) -> tuple[npt.NDArray[np.int64], Vectors]:
    keys = np.array([int(key) for key in model.wv.index_to_key], dtype=np.int64)
    vectors: Vectors = np.asarray(model.wv.vectors, dtype=np.float32)
    return keys, vectors
