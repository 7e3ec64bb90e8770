"""Item labels from movies.csv or a synthetic items.csv, and the nearest-neighbour table."""

from pathlib import Path

import numpy as np
import pytest

from streaming.embeddings.labels import (
    item_groups,
    item_labels,
    load_communities,
    neighbour_table,
)
from streaming.embeddings.vectors import Embeddings
from streaming.errors import DataError


def test_an_items_file_without_its_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("movieId,title\n1,Toy Story\n")
    with pytest.raises(ValueError, match="header"):
        load_communities(path)


def test_labels_of_a_ratings_file_come_from_movies_csv_next_to_it(tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n")
    (tmp_path / "items.csv").write_text("item_id,community\n1,0\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story (1995)",Animation|Kids\n'
    )
    assert item_labels(ratings) == {1: "Toy Story (1995)"}
    assert item_groups(ratings) == {1: "Animation"}


def test_labels_of_synthetic_data_are_communities(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("item_id,community\n1,0\n2,3\n")
    (tmp_path / "ratings.csv").write_text("")
    assert item_labels(tmp_path / "ratings.csv") == {1: "community 0", 2: "community 3"}
    assert item_labels(tmp_path / "items.csv") == item_groups(tmp_path / "items.csv")


def test_no_labels_file_is_no_labels_and_a_missing_path_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("")
    assert item_labels(tmp_path / "ratings.csv") == {}
    with pytest.raises(DataError, match="does not exist"):
        item_labels(tmp_path / "nothing.csv")


def test_neighbour_table_lists_the_nearest_items_first_and_flags_cold_ones() -> None:
    embeddings = Embeddings(
        np.array([1, 2, 3], dtype=np.int64),
        np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32),
        np.array([False, True, False]),
    )
    lines = neighbour_table(embeddings, [1, 99], {1: "one", 3: "three"}, k=2).splitlines()
    assert lines[0].split() == ["1", "one"]
    assert lines[1].split()[1:] == ["2", "(cold)"]
    assert lines[2].split()[1:] == ["3", "three"]
    assert len(lines) == 3  # item 99 has no vector: left out
