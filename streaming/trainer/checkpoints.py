"""Model checkpoints: a directory per cycle, complete or absent (built aside, then renamed)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gensim.models import Word2Vec

from streaming.embeddings.vectors import Embeddings
from streaming.trainer.durable import fsync_directory

__all__ = ["Checkpoint", "CheckpointStore"]


@dataclass(frozen=True)
class Checkpoint:
    """What a model covers: enough to resume, and to say where a version came from."""

    cycle: int
    kind: str  # "full" or "incremental"
    version: int | None  # the Redis version it was published as
    trained_through: int  # corpus sequence number of the first sample it has not seen
    offsets: dict[str, int]  # Kafka positions of the corpus when it was trained
    newest_event_time: int
    seed: int
    training: dict[str, Any]


class CheckpointStore:
    def __init__(self, directory: Path, keep: int = 3) -> None:
        self.directory = directory
        self.keep = keep
        directory.mkdir(parents=True, exist_ok=True)

    def latest(self) -> tuple[Checkpoint, Word2Vec, Embeddings] | None:
        complete = sorted(self.directory.glob("cycle-*[0-9]"))
        if not complete:
            return None
        path = complete[-1]
        checkpoint = Checkpoint(**json.loads((path / "checkpoint.json").read_text()))
        model = Word2Vec.load(str(path / "model.w2v"))
        arrays = np.load(path / "embeddings.npz")
        embeddings = Embeddings(arrays["item_ids"], arrays["vectors"], arrays["cold"])
        return checkpoint, model, embeddings

    def save(self, checkpoint: Checkpoint, model: Word2Vec, embeddings: Embeddings) -> Path:
        final = self.directory / f"cycle-{checkpoint.cycle:08d}"
        building = self.directory / f".cycle-{checkpoint.cycle:08d}.building"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        model.save(str(building / "model.w2v"))
        np.savez(
            building / "embeddings.npz",
            item_ids=embeddings.item_ids,
            vectors=embeddings.vectors,
            cold=embeddings.cold,
        )
        (building / "checkpoint.json").write_text(json.dumps(asdict(checkpoint), indent=1))
        for file in building.iterdir():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(building, final)
        fsync_directory(self.directory)
        for old in sorted(self.directory.glob("cycle-*[0-9]"))[: -self.keep]:
            shutil.rmtree(old)
        return final
