"""Word2Vec training: the same seed gives the same vectors, in one process and across processes."""

import os
import subprocess
import sys

import numpy as np

from streaming.config import TrainingSettings
from streaming.embeddings.word2vec import train_word2vec, trained_vectors


def test_word2vec_is_reproducible_with_one_worker() -> None:
    corpus = [[str(i), str(i + 1), str(i + 2)] for i in range(50)] * 4
    settings = TrainingSettings(vector_size=8, window=2, epochs=3, workers=1, seed=5)
    first = trained_vectors(train_word2vec(corpus, settings))
    second = trained_vectors(train_word2vec(corpus, settings))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    other = trained_vectors(train_word2vec(corpus, settings.model_copy(update={"seed": 6})))
    assert not np.array_equal(first[1], other[1])


_TRAIN_IN_A_PROCESS = """
from streaming.embeddings.word2vec import train_word2vec, trained_vectors
from streaming.config import TrainingSettings
corpus = [[str(i), str(i + 1), str(i + 2)] for i in range(50)] * 4
model = train_word2vec(corpus, TrainingSettings(vector_size=8, window=2, epochs=2, workers=1))
print(trained_vectors(model)[1].tobytes().hex())
"""


def test_same_seed_same_vectors_across_processes() -> None:
    """Python's str hash differs per process; recorded seeds must still reproduce a model."""
    outputs = {
        subprocess.run(
            [sys.executable, "-c", _TRAIN_IN_A_PROCESS],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(outputs) == 1
