"""Prequential evaluation: a ratings file replayed in event-time order, test then train.

Every transition (a user's previous kept item -> the next) is first scored against the
vectors a reader would have had at that moment, then learnt. Three update policies, on equal
terms (the same Word2Vec settings, the same corpus rules, the same cold-item rule):

- `stream`: the trainer's own cycles (`plan_cycle` and `train` on a real `Corpus`), one every
  `cycle_every` transitions: incremental, and a full retrain every `trainer.full_every`
  cycles, rotated onto the version before (`align`). The corpus holds what the job writes:
  each transition, and `stream.walks_per_weight` walks from the item it leaves, drawn over
  the counts of every transition so far. Between cycles, an item a transition brings gets
  its neighbours' average at once, as the trainer's cold publishing does.
- `nightly`: at each day boundary (UTC) with at least `nightly_min_new` transitions since its
  last retrain, a full retrain on everything before the boundary; at the other boundaries
  the items seen since get their neighbours' average (what a retrain's cold fill would
  give an item Word2Vec has not learnt). Items first seen today have no vector until the
  next boundary.
- `static`: one full retrain on the first half of the time range, scored on the second half.

A full retrain is the trainer's: `training_corpus` (user sequences and `walks.n_walks` walks
over their graph), `train_full`, then `with_cold_items`, and with `training.smoothing`
the trainer's smoothing over that graph (every policy's vectors alike). Items carry the
counts of their first `stream.item_neighbours` neighbours, as the items topic announces
them. Every cycle's candidate serves (there is no drift gate here), and the corpus's first
sample, a walk, is the only one held out.

A reader ranks every other item it has a vector for by cosine similarity to the query; the
answer's rank gives HR@k and NDCG@k. A query without a vector is a miss; `answerable`
counts queries with a vector, `coverage` the cases whose query and answer both have one.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from batch.evaluate import summarise
from streaming.config import Settings
from streaming.core.neighbours import neighbour_average
from streaming.embeddings.graph import Ints, Sequences, decayed_graph, transition_graph
from streaming.embeddings.pipeline import training_corpus
from streaming.embeddings.smoothing import smooth
from streaming.embeddings.vectors import Embeddings
from streaming.embeddings.walks import WalkSampler
from streaming.report import Report
from streaming.trainer.checkpoints import Checkpoint
from streaming.trainer.corpus import Corpus, UserTransition
from streaming.trainer.cycles import plan_cycle, train
from streaming.trainer.model import align, train_full, with_cold_items

__all__ = [
    "POLICIES",
    "Outcome",
    "Replay",
    "draw_months",
    "format_tables",
    "prequential",
    "replay_transitions",
    "run_nightly",
    "run_static",
    "run_stream",
    "summary",
]

POLICIES = ("stream", "nightly", "static")
DAY_S = 86_400
_CHUNK = 1024
_NEVER_HELD_OUT = 1 << 62  # trainer.held_out_every: only sample 0 is held out


@dataclass(frozen=True)
class Replay:
    """Kept transitions in event-time order (ties by user, then target item)."""

    users: Ints
    src: Ints
    dst: Ints
    times: Ints

    def __len__(self) -> int:
        return len(self.times)

    @property
    def days(self) -> Ints:
        days: Ints = self.times // DAY_S
        return days

    @property
    def fresh(self) -> npt.NDArray[np.bool_]:
        """Transitions whose target was first seen (in any transition) the same day."""
        items, inverse = np.unique(np.concatenate([self.src, self.dst]), return_inverse=True)
        first = np.full(len(items), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, inverse, np.concatenate([self.days, self.days]))
        fresh: npt.NDArray[np.bool_] = first[inverse[len(self) :]] == self.days
        return fresh

    @property
    def midpoint(self) -> int:
        """The middle of the time range: `static` learns before it and is scored after."""
        return int(self.times[0] + (self.times[-1] - self.times[0]) // 2) if len(self) else 0


def replay_transitions(sequences: Sequences) -> Replay:
    items = sequences.items
    step = np.ones(max(len(items) - 1, 0), dtype=bool)
    step[sequences.indptr[1:-1] - 1] = False
    at = np.flatnonzero(step & (items[:-1] != items[1:]))
    users = np.repeat(sequences.users, sequences.lengths)[at + 1]
    src, dst, times = items[at], items[at + 1], sequences.times[at + 1]
    order = np.lexsort((dst, users, times))
    return Replay(users[order], src[order], dst[order], times[order])


@dataclass
class Outcome:
    """Per transition: 1-based rank of the answer within the top k (0: a miss), whether the
    query had a vector, whether query and answer both had one, and whether it was scored."""

    ranks: Ints
    answerable: npt.NDArray[np.bool_]
    covered: npt.NDArray[np.bool_]
    scored: npt.NDArray[np.bool_]
    retrains: int = 0
    seconds: float = 0.0

    @classmethod
    def empty(cls, n: int) -> Outcome:
        return cls(np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool))


class _Neighbours:
    """Each item's counts with its first `limit` neighbours (in or out), as announced."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[int, dict[int, int]] = {}

    def add(self, src: int, dst: int) -> None:
        for item, other in ((src, dst), (dst, src)):
            counts = self.counts.setdefault(item, {})
            if other in counts or len(counts) < self.limit:
                counts[other] = counts.get(other, 0) + 1


class _Reader:
    """The vectors a reader has during one period: a version's, plus the rows added since,
    each visible from the transition after the one that added it."""

    def __init__(self, embeddings: Embeddings | None, since: int) -> None:
        self.known: dict[int, npt.NDArray[np.float32]] = (
            embeddings.as_dict() if embeddings is not None else {}
        )
        self.visible = dict.fromkeys(self.known, since)

    def add_cold(self, items: tuple[int, ...], neighbours: _Neighbours, visible: int) -> None:
        if not self.known:
            return
        for item in items:
            if item not in self.known:
                average = neighbour_average(neighbours.counts.get(item, {}), self.known)
                if average is not None:
                    self.known[item] = average
                    self.visible[item] = visible

    def score(self, replay: Replay, lo: int, hi: int, k: int, outcome: Outcome) -> None:
        outcome.scored[lo:hi] = True
        if hi <= lo or not self.known:
            return
        ids = np.fromiter(self.known, dtype=np.int64, count=len(self.known))
        vectors = np.vstack(list(self.known.values())).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        visible = np.array([self.visible[item] for item in ids.tolist()], dtype=np.int64)
        order = np.argsort(ids)
        index = np.arange(lo, hi)

        def rows_of(items: Ints) -> Ints:
            at = order[np.minimum(np.searchsorted(ids[order], items), len(ids) - 1)]
            return np.where((ids[at] == items) & (visible[at] <= index), at, -1)

        queries, answers = rows_of(replay.src[lo:hi]), rows_of(replay.dst[lo:hi])
        outcome.answerable[lo:hi] = queries >= 0
        outcome.covered[lo:hi] = (queries >= 0) & (answers >= 0)
        cases = np.flatnonzero((queries >= 0) & (answers >= 0))
        for start in range(0, len(cases), _CHUNK):
            chunk = cases[start : start + _CHUNK]
            rows = np.arange(len(chunk))
            scores = vectors[queries[chunk]] @ vectors.T
            scores[visible[None, :] > index[chunk, None]] = -np.inf
            scores[rows, queries[chunk]] = -np.inf  # never the query itself
            answer = scores[rows, answers[chunk]]
            rank = 1 + (scores > answer[:, None]).sum(axis=1)
            outcome.ranks[lo + chunk] = np.where(rank <= k, rank, 0)


def _prefix(sequences: Sequences, before: int) -> Sequences:
    """Every user's kept ratings before event time `before`."""
    keep = sequences.times < before
    lengths = np.add.reduceat(keep, sequences.indptr[:-1]) if len(keep) else np.zeros(0, int)
    lengths = np.where(sequences.lengths > 0, lengths, 0)
    users = lengths > 0
    indptr = np.concatenate([[0], np.cumsum(lengths[users])]).astype(np.int64)
    return Sequences(sequences.users[users], indptr, sequences.items[keep], sequences.times[keep])


def _full_retrain(
    sequences: Sequences, before: int, neighbours: _Neighbours, settings: Settings
) -> Embeddings | None:
    prefix = _prefix(sequences, before)
    graph = transition_graph(prefix, settings.walks.half_life_s)
    if graph.n_edges == 0:
        return None
    corpus, _ = training_corpus(prefix, graph, settings.training, settings.walks)
    embeddings, _ = with_cold_items(train_full(corpus, settings.training), neighbours.counts)
    return smooth(embeddings, graph, settings.training.smoothing)


def _day(seconds: int) -> str:
    return str(np.datetime64(int(seconds), "s").astype("datetime64[D]"))


def run_stream(
    replay: Replay,
    settings: Settings,
    cycle_every: int,
    k: int,
    report: Report,
    on_version: Callable[[str, Embeddings, int], None] | None = None,
) -> Outcome:
    """The trainer's cycles every `cycle_every` transitions, cold items in between; each
    cycle's vectors also go to `on_version` (with the cycle's kind and its newest transition's
    event time), for a caller that scores versions its own way."""
    began = time.perf_counter()
    n = len(replay)
    outcome = Outcome.empty(n)
    options = settings.trainer.model_copy(update={"held_out_every": _NEVER_HELD_OUT})
    training, walks = settings.training, settings.walks
    neighbours = _Neighbours(settings.stream.item_neighbours)
    reader = _Reader(None, 0)
    previous: Checkpoint | None = None
    model = None
    current: Embeddings | None = None
    with tempfile.TemporaryDirectory(prefix="walkstream-prequential-") as directory:
        corpus = Corpus(Path(directory), options.window_samples, options.segment_samples)
        period = 0
        for i, (src, dst) in enumerate(zip(replay.src.tolist(), replay.dst.tolist(), strict=True)):
            neighbours.add(src, dst)
            reader.add_cold((src, dst), neighbours, i + 1)
            if i + 1 - period < cycle_every and i + 1 < n:
                continue
            reader.score(replay, period, i + 1, k, outcome)
            if i + 1 == n:
                break
            cycle = previous.cycle + 1 if previous else 1
            _append(corpus, replay, period, i + 1, settings, cycle)
            full = previous is None or cycle % options.full_every == 0
            plan = plan_cycle(corpus, previous, model, full, options, training, walks)
            model = train(plan, training)
            embeddings, _ = with_cold_items(model, neighbours.counts)
            embeddings = plan.published(embeddings)
            if plan.full and current is not None:
                embeddings = align(embeddings, current)
            current = embeddings
            if on_version is not None:
                on_version(plan.kind, embeddings, int(replay.times[i]))
            previous = plan.checkpoint(None, training)
            reader = _Reader(embeddings, i + 1)
            outcome.retrains += 1
            report(
                f"  stream: cycle {plan.cycle} ({plan.kind}) at {i + 1:,}/{n:,} transitions "
                f"({_day(int(replay.times[i]))}), {len(embeddings):,} vectors, "
                f"{time.perf_counter() - began:.0f}s"
            )
            period = i + 1
    outcome.seconds = round(time.perf_counter() - began, 1)
    return outcome


def _append(
    corpus: Corpus, replay: Replay, lo: int, hi: int, settings: Settings, cycle: int
) -> None:
    """What the job writes for transitions lo..hi-1: `stream.walks_per_weight` walks from each
    transition's source over the counts so far (decayed with `walks.half_life_s`), and the
    transitions."""
    graph = decayed_graph(
        replay.src[:hi], replay.dst[:hi], replay.times[:hi], settings.walks.half_life_s
    )
    rng = np.random.default_rng([settings.training.seed, cycle])
    count = round(settings.stream.walks_per_weight * (hi - lo))
    picked = rng.choice(hi - lo, size=count, replace=count > hi - lo) + lo
    starts = np.searchsorted(graph.items, replay.src[np.sort(picked)]).astype(np.int32)
    sampled = WalkSampler(graph, settings.walks.p, settings.walks.q).sample_from(
        starts, settings.walks.length, seed=int(rng.integers(1 << 31))
    )
    samples: list[list[int] | UserTransition] = [
        graph.items[walk[walk >= 0]].tolist() for walk in sampled
    ]
    samples += [
        UserTransition(*row)
        for row in zip(
            replay.users[lo:hi].tolist(),
            replay.times[lo:hi].tolist(),
            replay.src[lo:hi].tolist(),
            replay.dst[lo:hi].tolist(),
            strict=True,
        )
    ]
    corpus.append(samples, {}, [], int(replay.times[hi - 1]))


def run_nightly(
    replay: Replay,
    sequences: Sequences,
    settings: Settings,
    min_new: int,
    k: int,
    report: Report,
) -> Outcome:
    """A full retrain at each day boundary with `min_new` new transitions; cold items at the
    others."""
    began = time.perf_counter()
    n = len(replay)
    outcome = Outcome.empty(n)
    neighbours = _Neighbours(settings.stream.item_neighbours)
    reader = _Reader(None, 0)
    days = replay.days.tolist()
    period = last = 0
    for i, (src, dst) in enumerate(zip(replay.src.tolist(), replay.dst.tolist(), strict=True)):
        if i and days[i] != days[i - 1]:
            if not reader.known or i - last >= min_new:
                reader.score(replay, period, i, k, outcome)
                embeddings = _full_retrain(sequences, days[i] * DAY_S, neighbours, settings)
                reader, period, last = _Reader(embeddings, i), i, i
                outcome.retrains += 1
                report(
                    f"  nightly: retrain {outcome.retrains} at {i:,}/{n:,} transitions "
                    f"({_day(days[i] * DAY_S)}), {len(reader.known):,} vectors, "
                    f"{time.perf_counter() - began:.0f}s"
                )
            else:
                reader.add_cold(tuple(sorted(neighbours.counts)), neighbours, i)
        neighbours.add(src, dst)
    reader.score(replay, period, n, k, outcome)
    outcome.seconds = round(time.perf_counter() - began, 1)
    return outcome


def run_static(
    replay: Replay, sequences: Sequences, settings: Settings, k: int, report: Report
) -> Outcome:
    """One full retrain on the first half of the time range, scored on the second half."""
    began = time.perf_counter()
    outcome = Outcome.empty(len(replay))
    midpoint = replay.midpoint
    split = int(np.searchsorted(replay.times, midpoint))
    neighbours = _Neighbours(settings.stream.item_neighbours)
    for src, dst in zip(replay.src[:split].tolist(), replay.dst[:split].tolist(), strict=True):
        neighbours.add(src, dst)
    embeddings = _full_retrain(sequences, midpoint, neighbours, settings)
    reader = _Reader(embeddings, split)
    outcome.retrains = 1
    report(
        f"  static: trained on {split:,} transitions before {_day(midpoint)}, "
        f"{len(reader.known):,} vectors"
    )
    reader.score(replay, split, len(replay), k, outcome)
    outcome.seconds = round(time.perf_counter() - began, 1)
    return outcome


def _metrics(outcome: Outcome, mask: npt.NDArray[np.bool_]) -> dict[str, Any]:
    take = mask & outcome.scored
    cases = int(take.sum())
    scores = summarise(outcome.ranks[take], cases, int(outcome.answerable[take].sum()))
    return {**asdict(scores), "coverage": float(outcome.covered[take].mean()) if cases else 0.0}


def summary(replay: Replay, outcomes: Mapping[str, Outcome]) -> dict[str, dict[str, Any]]:
    """Per policy: the metrics overall, on the same-day slice (`fresh`), after the midpoint
    (`second_half`) and per month (UTC), each with `walkstream eval --json`'s metric keys."""
    everything = np.ones(len(replay), dtype=bool)
    fresh = replay.fresh
    second_half = replay.times >= replay.midpoint
    months = replay.times.astype("datetime64[s]").astype("datetime64[M]").astype(str)
    result: dict[str, dict[str, Any]] = {}
    for name, outcome in outcomes.items():
        result[name] = {
            **_metrics(outcome, everything),
            "retrains": outcome.retrains,
            "seconds": outcome.seconds,
            "fresh": _metrics(outcome, fresh),
            "second_half": _metrics(outcome, second_half),
            "months": {
                month: _metrics(outcome, months == month)
                for month in np.unique(months).tolist()
                if (outcome.scored & (months == month)).any()
            },
        }
    return result


def format_tables(policies: Mapping[str, Mapping[str, Any]], k: int) -> str:
    header = f"{'policy':<9}{'slice':<13}{f'HR@{k}':>8}{f'NDCG@{k}':>9}{'coverage':>10}{'cases':>9}"
    lines = [header, "-" * len(header)]
    for name, metrics in policies.items():
        for label, row in (
            ("overall", metrics),
            ("same-day", metrics["fresh"]),
            ("second half", metrics["second_half"]),
        ):
            lines.append(
                f"{name:<9}{label:<13}{row['hit_rate']:8.4f}{row['ndcg']:9.4f}"
                f"{row['coverage']:10.1%}{row['cases']:9,}"
            )
    months = sorted({month for metrics in policies.values() for month in metrics["months"]})
    names = list(policies)
    head = f"{'month':<9}{'cases':>7}" + "".join(f"{f'HR {name}':>12}" for name in names)
    lines += ["", f"per month (HR@{k})", head, "-" * len(head)]
    for month in months:
        rows = [policies[name]["months"].get(month) for name in names]
        cases = max(row["cases"] for row in rows if row is not None)
        lines.append(
            f"{month:<9}{cases:7,}"
            + "".join("           -" if row is None else f"{row['hit_rate']:12.4f}" for row in rows)
        )
    return "\n".join(lines)


def draw_months(out: Path, policies: Mapping[str, Mapping[str, Any]], k: int, title: str) -> Path:
    """HR@k per month of every policy, and the cases per month, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(12, 7), sharex=True, height_ratios=(3, 1), layout="constrained"
    )
    months = sorted({month for metrics in policies.values() for month in metrics["months"]})
    at = {month: x for x, month in enumerate(months)}
    for name, metrics in policies.items():
        shown = sorted(metrics["months"])
        top.plot(
            [at[m] for m in shown],
            [metrics["months"][m]["hit_rate"] for m in shown],
            marker=".",
            linewidth=1,
            label=f"{name} (overall {metrics['hit_rate']:.4f})",
        )
    top.set_ylabel(f"HR@{k}")
    top.legend()
    top.grid(alpha=0.3)
    counts = [
        max(m["months"][month]["cases"] for m in policies.values() if month in m["months"])
        for month in months
    ]
    bottom.bar(range(len(months)), counts, color="#888888")
    bottom.set_ylabel("transitions")
    step = max(1, len(months) // 12)
    bottom.set_xticks(range(0, len(months), step), months[::step], rotation=45, ha="right")
    figure.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def prequential(
    sequences: Sequences,
    settings: Settings,
    cycle_every: int,
    nightly_min_new: int,
    k: int,
    report: Report,
) -> tuple[Replay, dict[str, Outcome]]:
    """Replay `sequences`' transitions under every policy."""
    replay = replay_transitions(sequences)
    report(
        f"  {len(replay):,} transitions from {_day(int(replay.times[0]))} to "
        f"{_day(int(replay.times[-1]))}, {len(np.unique(replay.days)):,} days"
    )
    outcomes = {
        "stream": run_stream(replay, settings, cycle_every, k, report),
        "nightly": run_nightly(replay, sequences, settings, nightly_min_new, k, report),
        "static": run_static(replay, sequences, settings, k, report),
    }
    return replay, outcomes
