"""`walkstream demo` end to end at a small size, and `walkstream plot` on what it published."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from batch.evaluate import community_precision
from streaming.cli import main
from streaming.config import Settings
from streaming.embeddings.graph import transition_graph, user_sequences
from streaming.embeddings.labels import load_communities
from streaming.embeddings.users import recency_weights, recent_items
from streaming.plot import version_embeddings
from streaming.rating_files import load_events
from streaming.store import EmbeddingClient

pytestmark = pytest.mark.integration


def test_the_demo_publishes_embeddings_of_every_seen_item_that_keep_communities_together(
    local_stack: Settings, unique: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    flags = [
        f"kafka.bootstrap_servers={local_stack.kafka.bootstrap_servers}",
        f"redis.url={local_stack.redis.url}",
        f"redis.password_file={local_stack.redis.password_file}",
        f"redis.key_prefix={unique}",
        f"runtime.home={home}",
        f"runtime.jars_dir={local_stack.runtime.jars_dir}",
        f"runtime.redis_server={local_stack.runtime.redis_server}",
    ]
    settings_flags = [part for flag in flags for part in ("--set", flag)]
    demo = ["demo", "--events", "20000", "--users", "1000", "--items", "400"]
    demo += ["--communities", "8", "--rate", "0", "--wait-s", "180"]

    assert main([*settings_flags, *demo]) == 0
    output = capsys.readouterr().out

    # the printed summary: a version, full coverage, a neighbour table
    assert re.search(r"coverage\s+(\d[\d,]*) of the \1 items the job has seen", output), output
    assert "nearest neighbours (cosine) of the most-rated items" in output
    assert "demo: stopped everything it started" in output
    # the job and the trainer are gone, and the demo left the session's services running
    for pid in re.findall(r"started the (?:job|trainer) \(pid (\d+)", output):
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)

    # checked independently of what the demo printed: every item of a transition (the batch
    # pipeline's, which the job reproduces exactly) has a vector
    (run_dir,) = (home / "demo").glob("run-*")
    (data_dir,) = (home / "demo").glob("synthetic-*")
    columns, _ = load_events(data_dir / "ratings.csv", "csv", local_stack.events)
    sequences = user_sequences(*columns, 3.5)
    seen = {item for pair in transition_graph(sequences).to_dict() for item in pair}
    assert len(seen) > 300, output  # of 400 items
    client = EmbeddingClient.from_settings(
        local_stack.redis.model_copy(update={"key_prefix": f"{unique}-demo"})
    )
    view = client.current()
    assert view.version >= 1
    embeddings = version_embeddings(view)
    assert seen <= set(embeddings.item_ids.tolist()), output

    communities = load_communities(data_dir / "items.csv")
    precision = community_precision(embeddings, communities, k=10)
    sizes = np.bincount([communities[item] for item in embeddings.item_ids.tolist()])
    chance = (sizes * (sizes - 1)).sum() / (len(embeddings) * (len(embeddings) - 1))
    assert chance < 0.15
    assert precision > 4 * chance, (precision, chance)

    # every user with a kept rating of an item the version has gets a vector, and the
    # printed recommendations are the version's, without the user's recent items
    placed = {
        int(sequences.users[k])
        for k in range(len(sequences.users))
        if set(sequences.items_of(k).tolist()) & set(embeddings.item_ids.tolist())
    }
    assert view.meta()["users"] == len(placed)
    match = re.search(r"user (\d+) in version \d+: recent items", output)
    assert match, output
    user = int(match[1])
    recommended = {item for item, _ in view.recommend(user, 10)}
    assert len(recommended) == 10
    assert not recommended & set(view.user_items(user))
    # through the job and the trainer: the user's vector is the weighted average of the
    # version's directions (unit vectors) of their last 20 kept items, as the batch
    # sequences have them
    (k,) = np.flatnonzero(sequences.users == user)
    recent = recent_items(sequences.items_of(int(k)).tolist(), 20)
    assert view.user_items(user) == recent
    vectors = view.vectors(recent)
    weights = recency_weights(len(recent), local_stack.users.recency_decay)
    known = [
        (w, vectors[i] / np.linalg.norm(vectors[i]))
        for w, i in zip(weights, recent, strict=True)
        if i in vectors
    ]
    expected = sum(w * v for w, v in known) / sum(w for w, _ in known)
    np.testing.assert_allclose(view.user_vector(user), expected, rtol=1e-5, atol=1e-6)

    assert (run_dir / "demo.png").read_bytes().startswith(b"\x89PNG")
    picture = tmp_path / "plot.png"
    plot = ["plot", "--out", str(picture), "--labels", str(data_dir / "items.csv")]
    assert main([*settings_flags, "--set", f"redis.key_prefix={unique}-demo", *plot]) == 0
    assert picture.read_bytes().startswith(b"\x89PNG")
    client.close()
