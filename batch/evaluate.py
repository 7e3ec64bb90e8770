"""Next-item evaluation with a per-user temporal hold-out.

For every user with at least `min_items` kept ratings, the last `fraction` of the sequence
(at least one item) is held out; models train on everything else. Each held-out item is a
test case: query = the item before it, answer = the item itself, candidates = every other
item with a vector, ranked by cosine similarity to the query. A query without a vector is a
miss, so coverage counts.

The same cases are also asked of a user vector (`user_rank_scores`): the recency-weighted
average of the directions (unit vectors) of the user's recent items before the case
(training part and the held-out items before it, as the previous-item query has them),
ranked against every item with a vector except the ones the user rated before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streaming.embeddings.graph import Ints, Sequences
from streaming.embeddings.users import NO_ITEM, ItemDirections, user_vectors
from streaming.embeddings.vectors import Embeddings

__all__ = [
    "HoldOut",
    "community_precision",
    "community_shares",
    "popularity_scores",
    "rank_scores",
    "recent_before",
    "summarise",
    "temporal_holdout",
    "user_rank_scores",
]

_CHUNK = 2048


@dataclass(frozen=True)
class HoldOut:
    train: Sequences
    queries: Ints
    answers: Ints
    sequences: Sequences
    """The whole sequences the hold-out was cut from."""
    at: Ints
    """Each case's answer as a position in `sequences.items` (its query is at `at - 1`)."""


@dataclass(frozen=True)
class RankScores:
    hit_rate: float
    ndcg: float
    cases: int
    answerable: int
    """Cases whose query has a vector (the others are misses)."""


def temporal_holdout(sequences: Sequences, fraction: float = 0.2, min_items: int = 3) -> HoldOut:
    lengths = sequences.lengths
    held = np.where(lengths >= min_items, np.maximum(1, np.floor(fraction * lengths)), 0).astype(
        np.int64
    )
    keep = lengths - held
    # position of every item within its user's sequence
    position = np.arange(len(sequences.items)) - np.repeat(sequences.indptr[:-1], lengths)
    in_train = position < np.repeat(keep, lengths)
    test = np.flatnonzero(~in_train)
    queries, answers = sequences.items[test - 1], sequences.items[test]
    distinct = queries != answers  # a repeat of the same item is no next-item case
    train_indptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    train = Sequences(
        sequences.users, train_indptr, sequences.items[in_train], sequences.times[in_train]
    )
    return HoldOut(train, queries[distinct], answers[distinct], sequences, test[distinct])


def recent_before(
    sequences: Sequences, rows: Ints, ends: Ints, limit: int
) -> npt.NDArray[np.int64]:
    """Row `c`: the recent items (`users.recent_items` of the items of user row `rows[c]`
    at positions before `ends[c]` in `sequences.items`), as `users.padded` lays them out;
    vectorised over rows."""
    items, indptr = sequences.items, sequences.indptr
    fresh = np.ones(len(items), dtype=bool)  # not a repeat of the item before, within a user
    fresh[1:] = items[1:] != items[:-1]
    fresh[indptr[:-1][indptr[:-1] < len(items)]] = True
    collapsed = items[fresh]
    before = np.concatenate([[0], np.cumsum(fresh)])  # collapsed items before each position
    first, stop = before[indptr[rows]], before[ends]
    at = stop[:, None] - limit + np.arange(limit)
    return np.where(at >= first[:, None], collapsed[np.maximum(at, 0)], NO_ITEM).astype(np.int64)


def _ranks_from_scores(
    scores: npt.NDArray[np.float32], answers_at: Ints, k: int
) -> npt.NDArray[np.int64]:
    """1-based rank of each answer among the top k by score (0 if not in the top k)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    hit = top == answers_at[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)


def summarise(ranks: Ints, cases: int, answerable: int) -> RankScores:
    """HR@k and NDCG@k of 1-based ranks within the top k (0: a miss) over `cases` cases."""
    hits = ranks > 0
    gains = np.where(hits, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
    ndcg = gains.sum() / cases if cases else 0.0
    hit_rate = hits.sum() / cases if cases else 0.0
    return RankScores(float(hit_rate), float(ndcg), cases, answerable)


def rank_scores(embeddings: Embeddings, queries: Ints, answers: Ints, k: int = 10) -> RankScores:
    order = np.argsort(embeddings.item_ids)
    ids = embeddings.item_ids[order]
    vectors = embeddings.vectors[order].astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def rows_of(items: Ints) -> Ints:
        at = np.minimum(np.searchsorted(ids, items), len(ids) - 1)
        return np.where(ids[at] == items, at, -1)

    query_rows, answer_rows = rows_of(queries), rows_of(answers)
    usable = np.flatnonzero(query_rows >= 0)
    ranks = np.zeros(len(usable), dtype=np.int64)
    for start in range(0, len(usable), _CHUNK):
        chunk = usable[start : start + _CHUNK]
        scores = vectors[query_rows[chunk]] @ vectors.T
        scores[np.arange(len(chunk)), query_rows[chunk]] = -np.inf  # never the query itself
        ranks[start : start + len(chunk)] = _ranks_from_scores(scores, answer_rows[chunk], k)
    return summarise(ranks, len(queries), len(usable))


def user_rank_scores(
    embeddings: Embeddings, holdout: HoldOut, limit: int, decay: float, k: int = 10
) -> RankScores:
    """Every hold-out case asked of its user's vector: the `users.user_vectors` average of
    `embeddings` over the user's `limit` recent items before the case, weighted by `decay`.
    Candidates are the items with a vector except those the user rated before the case (an
    answer among them is a miss); a user without a vector is a miss."""
    sequences = holdout.sequences
    rows = np.searchsorted(sequences.indptr, holdout.at, side="right") - 1
    recent = recent_before(sequences, rows, holdout.at, limit)
    users, has = user_vectors(recent, ItemDirections.of(embeddings), decay)
    usable = np.flatnonzero(has)
    if len(usable) == 0:
        return summarise(np.zeros(0, dtype=np.int64), len(holdout.answers), 0)
    order = np.argsort(embeddings.item_ids)
    ids = embeddings.item_ids[order]
    vectors = embeddings.vectors[order].astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    users /= np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1e-12)

    def rows_of(items: Ints) -> Ints:
        at = np.minimum(np.searchsorted(ids, items), len(ids) - 1)
        return np.where(ids[at] == items, at, -1)

    answer_rows = rows_of(holdout.answers)
    starts = sequences.indptr[rows]
    ranks = np.zeros(len(usable), dtype=np.int64)
    for begin in range(0, len(usable), _CHUNK):
        chunk = usable[begin : begin + _CHUNK]
        scores = users[chunk] @ vectors.T
        # the items each case's user rated before it, as (case in chunk, item row) pairs
        lengths = holdout.at[chunk] - starts[chunk]
        case = np.repeat(np.arange(len(chunk)), lengths)
        offset = np.arange(len(case)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        seen = rows_of(sequences.items[np.repeat(starts[chunk], lengths) + offset])
        scores[case[seen >= 0], seen[seen >= 0]] = -np.inf
        answers_at = answer_rows[chunk]
        found = _ranks_from_scores(scores, answers_at, k)
        seen_answer = (answers_at >= 0) & (
            scores[np.arange(len(chunk)), np.maximum(answers_at, 0)] == -np.inf
        )
        ranks[begin : begin + len(chunk)] = np.where(seen_answer, 0, found)
    return summarise(ranks, len(holdout.answers), len(usable))


def popularity_scores(train: Sequences, queries: Ints, answers: Ints, k: int = 10) -> RankScores:
    """The k most-rated training items (other than the query) for every query."""
    items, counts = np.unique(train.items, return_counts=True)
    ranked = items[np.argsort(-counts, kind="stable")][: k + 1]
    ranks = np.zeros(len(queries), dtype=np.int64)
    for case, (query, answer) in enumerate(zip(queries.tolist(), answers.tolist(), strict=True)):
        shown = [item for item in ranked.tolist() if item != query][:k]
        if answer in shown:
            ranks[case] = shown.index(answer) + 1
    return summarise(ranks, len(queries), len(queries))


def community_precision(
    embeddings: Embeddings, communities: Mapping[int, int], k: int = 10, sample: int = 2000
) -> float:
    """Mean share of an item's k nearest neighbours in its planted community (synthetic data)."""
    _, shares = community_shares(embeddings, communities, k, sample)
    return float(shares.mean()) if len(shares) else 0.0


def community_shares(
    embeddings: Embeddings, communities: Mapping[int, int], k: int = 10, sample: int = 2000
) -> tuple[Ints, npt.NDArray[np.float64]]:
    """For a seeded sample of `sample` items with a planted community: the items, and the
    share of each one's k nearest neighbours (among such items) in its community; none when
    k or fewer items have one."""
    known = np.array([item in communities for item in embeddings.item_ids.tolist()])
    ids = embeddings.item_ids[known]
    if len(ids) <= k:
        return ids[:0], np.zeros(0)
    vectors = embeddings.vectors[known].astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    labels = np.array([communities[item] for item in ids.tolist()])
    rows = np.random.default_rng(0).permutation(len(ids))[:sample]
    shares = []
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        scores = vectors[chunk] @ vectors.T
        scores[np.arange(len(chunk)), chunk] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        shares.append((labels[top] == labels[chunk, None]).mean(axis=1))
    return ids[rows], np.concatenate(shares)
