"""The batch commands end to end on a small synthetic data set with planted communities."""

import json
from pathlib import Path

import numpy as np
import pytest

from streaming.cli import main
from streaming.config import Settings
from streaming.embeddings.labels import load_communities
from streaming.store import connect
from streaming.store.versions import current_version


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(out), "--users", "600", "--items", "300",
                 "--communities", "10", "--events", "12000", "--seed", "3"]) == 0  # fmt: skip
    return out


FAST = ["--set", "training.epochs=5", "--set", "training.workers=1", "--set", "walks.n_walks=3000"]


def test_batch_writes_vectors_for_every_item_in_a_transition(
    synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    ratings = str(synthetic / "ratings.csv")
    assert main([*FAST, "batch", "--ratings", ratings, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "coverage 100.0%" in printed
    assert "community" in printed  # neighbour table labels items with their planted community

    meta = json.loads((out / "meta.json").read_text())
    lines = (out / "embeddings.tsv").read_text().splitlines()
    assert len(lines) == meta["counts"]["vectors"] >= meta["counts"]["items"]
    assert meta["coverage"] == 1.0
    assert meta["seed"] == 42
    assert meta["parameters"]["training"]["epochs"] == 5
    item, vector = lines[0].split("\t")
    assert int(item) > 0
    assert len(vector.split()) == meta["parameters"]["training"]["vector_size"]
    assert (out / "word2vec.model").is_file()

    # planted structure is learned: neighbours share a community far above chance (1/10)
    communities = load_communities(synthetic / "items.csv")
    ids = np.array([int(line.split("\t")[0]) for line in lines])
    vectors = np.array([[float(x) for x in line.split("\t")[1].split()] for line in lines])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similar = vectors @ vectors.T
    np.fill_diagonal(similar, -np.inf)
    top = np.argsort(-similar, axis=1)[:, :10]
    labels = np.array([communities[i] for i in ids.tolist()])
    assert (labels[top] == labels[:, None]).mean() > 0.6


def _read_tsv(path: Path) -> dict[int, np.ndarray]:
    rows = (line.split("\t") for line in path.read_text().splitlines())
    return {int(key): np.array([float(x) for x in floats.split()]) for key, floats in rows}


def test_batch_writes_each_users_weighted_average_of_their_last_items_directions(
    tmp_path: Path,
) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(
        "userId,movieId,rating,timestamp\n"
        "1,1,5.0,10\n1,2,4.0,11\n1,3,2.0,12\n1,4,4.5,13\n1,4,4.5,14\n1,5,4.0,15\n"
        "2,2,4.0,10\n2,3,4.0,11\n2,5,5.0,12\n2,6,4.0,13\n"
        "3,6,4.0,10\n3,1,4.0,11\n3,3,4.0,12\n"
        "4,7,5.0,10\n4,8,1.0,11\n"  # 7 is in no transition: no vector, nor has user 4
        "5,1,1.0,10\n"  # no kept rating: not a user of the sequences
    )
    out = tmp_path / "out"
    users = ["--set", "users.recent_items=3", "--set", "users.recency_decay=0.5"]
    assert main([*FAST, *users, "batch", "--ratings", str(ratings), "--out", str(out)]) == 0
    items, vectors = _read_tsv(out / "embeddings.tsv"), _read_tsv(out / "users.tsv")
    assert sorted(items) == [1, 2, 3, 4, 5, 6]
    items = {item: vector / np.linalg.norm(vector) for item, vector in items.items()}
    assert sorted(vectors) == [1, 2, 3]
    # user 1 kept 1, 2, 4, 4, 5 (3 rated low): the last 3 without the repeat are 2, 4, 5
    expected = (0.25 * items[2] + 0.5 * items[4] + items[5]) / 1.75
    np.testing.assert_allclose(vectors[1], expected, rtol=1e-4, atol=1e-6)
    expected = (0.25 * items[3] + 0.5 * items[5] + items[6]) / 1.75
    np.testing.assert_allclose(vectors[2], expected, rtol=1e-4, atol=1e-6)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"]["user_vectors"] == 3
    assert meta["counts"]["users_without_vector"] == 1
    assert meta["parameters"]["users"] == {"recent_items": 3, "recency_decay": 0.5}


def test_eval_compares_variants_and_writes_json(synthetic: Path, tmp_path: Path) -> None:
    result = tmp_path / "eval.json"
    ratings = str(synthetic / "ratings.csv")
    users = ["--set", "users.recent_items=20", "--set", "users.recency_decay=0.9"]
    assert main([*FAST, *users, "eval", "--ratings", ratings, "--json", str(result),
                 "--variant", "small:training.vector_size=8,fill_cold=false",
                 "--users-grid", "5,20:1,0.9"]) == 0  # fmt: skip
    written = json.loads(result.read_text())
    rows = {row["variant"]: row for row in written["results"]}
    variants = ["walkstream", "reference-item2vec", "reference-deepwalk", "small"]
    assert set(rows) == {"popularity", *variants, *(f"{name}:user" for name in variants)}
    assert {row["query"] for row in rows.values()} == {"popularity", "previous-item", "user"}
    user = rows["walkstream:user"]
    assert user["users"] == {"recent_items": 20, "recency_decay": 0.9}
    assert user["cases"] == rows["walkstream"]["cases"] == rows["popularity"]["cases"]
    assert user["hit_rate"] > rows["popularity"]["hit_rate"]
    grid = [row for row in written["users_grid"] if row["variant"] == "walkstream"]
    assert [(row["recent_items"], row["recency_decay"]) for row in grid] == [
        (5, 1.0),
        (5, 0.9),
        (20, 1.0),
        (20, 0.9),
    ]
    # the grid's point at the settings scores the same embeddings the same way
    assert {key: grid[3][key] for key in ("hit_rate", "ndcg", "answerable")} == {
        key: user[key] for key in ("hit_rate", "ndcg", "answerable")
    }
    assert rows["small"]["training"]["vector_size"] == 8
    # the references are the course's Word2Vec as it is: never smoothed, whatever the default
    assert rows["walkstream"]["training"]["smoothing"] == 0.5
    assert rows["reference-item2vec"]["training"]["smoothing"] == 0
    assert rows["reference-deepwalk"]["training"]["smoothing"] == 0
    assert rows["small"]["fill_cold"] is False
    assert rows["walkstream"]["coverage"] == 1.0
    assert rows["walkstream"]["community_precision"] > 0.6
    assert rows["walkstream"]["hit_rate"] > rows["popularity"]["hit_rate"]


def test_bad_variant_is_a_clear_error(synthetic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ratings = str(synthetic / "ratings.csv")
    assert main(["eval", "--ratings", ratings, "--variant", "x:training.vector_size=1"]) == 2
    assert "--variant x" in capsys.readouterr().err


@pytest.mark.parametrize("grid", ["5,20", "5,x:0.9", "0:0.9", "5:1.5"])
def test_bad_users_grid_is_a_clear_error(
    synthetic: Path, grid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ratings = str(synthetic / "ratings.csv")
    assert main(["eval", "--ratings", ratings, "--users-grid", grid]) == 2
    assert f"--users-grid {grid!r}" in capsys.readouterr().err


@pytest.mark.integration
def test_batch_publish_makes_a_current_version_similar_reads(
    synthetic: Path,
    tmp_path: Path,
    local_stack: Settings,
    unique: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = [
        *FAST,
        "--set",
        f"redis.url={local_stack.redis.url}",
        "--set",
        f"redis.password_file={local_stack.redis.password_file}",
        "--set",
        f"redis.key_prefix={unique}",
    ]
    ratings = str(synthetic / "ratings.csv")
    assert main([*flags, "batch", "--ratings", ratings, "--out", str(tmp_path), "--publish"]) == 0
    client = connect(local_stack.redis)
    version = current_version(client, unique)
    assert version is not None
    count = json.loads((tmp_path / "meta.json").read_text())["counts"]["vectors"]
    assert client.hlen(f"{unique}:v:{version}:vectors") == count

    capsys.readouterr()
    assert main([*flags, "similar", "1", "-k", "3", "--labels", ratings]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"version {version}: {count:,} items")
    assert lines[1].startswith("nearest to 1")
    assert "community" in lines[1]
    assert [line.split()[0] for line in lines[3:]] == ["1", "2", "3"]
    assert main([*flags, "similar", "999999"]) == 2  # an item without a vector: one line
    assert "999999" in capsys.readouterr().err
