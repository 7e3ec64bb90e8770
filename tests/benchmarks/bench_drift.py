"""Drift (`make bench`): how fast the served embeddings follow items that change community,
with transitions decaying (`walks.half_life_s`) and without.

Generates synthetic data in which `--drift-share` of the items move to another planted
community in the middle of the year, streams it in event-time order (the first 1%, then
`--rate` events/s from the first served version on) through the real producer -> Kafka ->
job -> trainer -> Redis (every other setting at its default), once without decay and once
with a half-life of `--half-life-days`, and scores every version the trainer serves:
same-community precision@10 of its vectors (`batch.evaluate.community_shares`) against
the communities in force at the version's newest event time, and after the shift the same
for the items that stayed and for the moved items by how many ratings they have had since
(`by_group`: what a version could know of their new community). Recovery: the events after
the shift until the first version whose precision is 90% of the pre-shift precision (the median
of the versions served over the second half of the events before the shift). Writes JSON
(`{"runs": {"off": {...}, "on": {...}}, "recovery_ratio": ...}`), a plot of precision
against events, and each run's trainer log, next to `--out`. `--set KEY=VALUE` gives both
runs a setting (`training.smoothing=0.5`: published vectors smoothed over the graph).

`--offline` runs the same data through the trainer's own cycles without Kafka, Flink or
Redis (`batch.prequential.run_stream`: the job's walks and transitions written to a real
`Corpus`, a cycle every `--cycle-every` transitions, no drift gate). Its cycles fall at
fixed transition counts, not where the machine's speed puts them, so two runs differ only
by Word2Vec's thread scheduling: for judging a change to the model's update, which the live
run's spread would hide. Its JSON and plot go to `drift-offline.*` unless `--out` says
otherwise.

`--from-scratch` is the bound a model's update cannot beat on this data: at every `--step`
events (from half-way to the shift until it recovers), a model trained from scratch on every
event so far, as `walkstream batch` trains one (`embed_sequences`: user sequences and walks
over the decayed graph, cold items filled), scored the same way. Its JSON and plot go to
`drift-from-scratch.*`.

`--vote-bound` is the bound of what the graph itself tells, whatever the model: at every
`--step` events from half-way to the shift, each item's vector is its neighbours' votes over
the communities in force (the in- and out-neighbours of the graph so far, decayed or not,
each voting for its true community: knowledge no model has), scored the same way. Where even
these votes do not place the moved items, no model of the same transitions can.
`--vote-window K` makes every item within K ratings of an item in a user's sequence its
neighbour (1: the transitions), so the votes see what Word2Vec's context window over the user
sequences sees (`training.window`). Its JSON and plot go to `drift-vote-bound.*`
(`drift-vote-bound-window-K.*` with a window of more than 1).
`--forget-moved` (with `--vote-bound`) replaces the decayed run by the best any forgetting
could do: the moved items' votes count only their neighbours since the shift, every other
item's all of them, undecayed, as if each item's change were detected the moment it happened
and its past dropped exactly (`drift-vote-bound-forget-moved*.*`). Where these votes need
more than a third of the events the run without forgetting needs, no forgetting scheme over
the same co-ratings meets the goal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from batch.evaluate import community_shares
from batch.prequential import Replay, replay_transitions, run_stream
from batch.synthetic import SyntheticSpec, generate, load_drift
from streaming.config import EventSettings, load_settings, parse_assignments
from streaming.core.events import Event
from streaming.embeddings.graph import Sequences, decayed_graph, user_sequences
from streaming.embeddings.labels import load_communities
from streaming.embeddings.pipeline import embed_sequences
from streaming.embeddings.vectors import Embeddings
from streaming.plot import version_embeddings
from streaming.producer import RatingProducer
from streaming.rating_files import EventColumns, load_events
from streaming.store import EmbeddingClient
from tests.benchmarks.stack import LiveSystem, live_system

ROOT = Path(__file__).resolve().parents[2]
DAY_S = 86_400
RECOVERED = 0.9


@dataclass(frozen=True)
class _Scorer:
    """Scores a version's vectors against the communities in force at its newest event time."""

    times: npt.NDArray[np.int64]  # every event's time, in order
    items: npt.NDArray[np.int64]  # every event's item, in the same order
    drift_time: int
    before: dict[int, int]
    after: dict[int, int]

    @cached_property
    def moved(self) -> npt.NDArray[np.int64]:
        """The items whose community the shift changes."""
        return np.array([i for i in self.after if self.before.get(i) != self.after[i]], np.int64)

    @cached_property
    def shift(self) -> int:
        """The number of events before the shift."""
        return int(np.searchsorted(self.times, self.drift_time))

    def score(self, version: int, kind: str, newest: int, embeddings: Embeddings) -> dict[str, Any]:
        """The version's precision; after the shift also that of the items that stayed and of
        the moved items by how many ratings they have had since the shift (what the version
        could know of their new community): [items, precision] each."""
        truth = self.before if newest < self.drift_time else self.after
        events = int(np.searchsorted(self.times, newest, side="right"))
        ids, shares = community_shares(embeddings, truth)
        scored: dict[str, Any] = {
            "version": version,
            "kind": kind,
            "newest_event_time": newest,
            "events": events,
            "precision": round(float(shares.mean()), 4) if len(shares) else 0.0,
        }
        if newest >= self.drift_time and len(ids):
            since = np.bincount(self.items[self.shift : events], minlength=int(ids.max()) + 1)
            since = since[ids]
            moved = np.isin(ids, self.moved)
            groups = {
                "stayed": ~moved,
                "moved, 0 ratings since": moved & (since == 0),
                "moved, 1-2": moved & (since >= 1) & (since <= 2),
                "moved, 3-5": moved & (since >= 3) & (since <= 5),
                "moved, 6 or more": moved & (since >= 6),
            }
            scored["by_group"] = {
                name: [int(group.sum()), round(float(shares[group].mean()), 3)]
                for name, group in groups.items()
                if group.any()
            }
        return scored


class _Versions(threading.Thread):
    """Scores every version served while it runs."""

    def __init__(self, system: LiveSystem, scorer: _Scorer) -> None:
        super().__init__(daemon=True)
        self.client = EmbeddingClient.from_settings(system.settings.redis)
        self.scorer = scorer
        self.scored: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        seen = None
        while not self.stop.wait(0.5):
            if self.client.version in (None, seen):
                continue
            view = self.client.current()
            seen = view.version
            info = view.meta()["info"]
            newest = int(info.get("newest_event_time", 0))
            self.scored.append(
                self.scorer.score(view.version, info.get("kind"), newest, version_embeddings(view))
            )
            print(f"  version {view.version}: {self.scored[-1]}", flush=True)


def _recovery(scored: list[dict[str, Any]], shift: int) -> dict[str, Any]:
    before = [v["precision"] for v in scored if shift // 2 <= v["events"] <= shift]
    if not before:
        return {"pre_shift": None, "events_to_recover": None}
    pre_shift = float(np.median(before))
    recovered = next(
        (v for v in scored if v["events"] > shift and v["precision"] >= RECOVERED * pre_shift),
        None,
    )
    return {
        "pre_shift": pre_shift,
        "events_to_recover": None if recovered is None else recovered["events"] - shift,
        "recovered_at_version": None if recovered is None else recovered["version"],
    }


def _run(
    events: list[Event],
    newest_transition: int,
    rate: float,
    extra: list[str],
    scorer: _Scorer,
    deadline_s: float,
    trainer_log: Path,
) -> dict[str, Any]:
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        live_system(Path(tmp_dir), "trainer.metrics_port=0", *extra) as system,
    ):
        system.start("job", "job", "--from", "earliest")
        system.start("trainer", "trainer")
        versions = _Versions(system, scorer)
        versions.start()
        warm_up = len(events) // 100
        # A later rating of a user of its own (no transition) moves the watermark past the
        # last events, as live traffic would, so their transitions are released too.
        sentinel = Event(max(e.user_id for e in events) + 1, events[0].item_id, 5.0,
                         events[-1].event_time + DAY_S)  # fmt: skip
        with RatingProducer(system.settings) as producer:
            # The first events wait for the job's start and JIT: pace the rest from the first
            # version on, so every version covers the rate's share of the stream.
            for event in events[:warm_up]:
                producer.send(event)
            producer.flush()
            _wait(lambda: bool(versions.scored), deadline_s, began, system)
            paced = time.monotonic()
            step = max(1, int(rate / 10))
            for at in range(warm_up, len(events), step):
                for event in events[at : at + step]:
                    producer.send(event)
                producer.flush()
                wait = paced + (at + step - warm_up) / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            producer.send(sentinel)
        print(f"produced {len(events):,} events in {time.monotonic() - began:.0f}s", flush=True)
        newest = newest_transition
        # the settling full retrain of everything (trainer.settle_s after the last sample)
        _wait(
            lambda: any(
                v["newest_event_time"] >= newest and v["kind"] == "full" for v in versions.scored
            ),
            deadline_s,
            began,
            system,
        )
        versions.stop.set()
        versions.join()
        trainer_log.write_text(system.log("trainer"))
    return {"versions": versions.scored, "seconds": round(time.monotonic() - began, 1)}


def _run_offline(
    replay: Replay, extra: list[str], scorer: _Scorer, cycle_every: int
) -> dict[str, Any]:
    """The trainer's cycles over `replay` without the live system; every cycle's vectors
    scored as a served version is."""
    began = time.monotonic()
    settings = load_settings(overrides=parse_assignments(extra))
    scored: list[dict[str, Any]] = []

    def score(kind: str, embeddings: Embeddings, newest: int) -> None:
        scored.append(scorer.score(len(scored) + 1, kind, newest, embeddings))
        print(f"  cycle {len(scored)}: {scored[-1]}", flush=True)

    run_stream(replay, settings, cycle_every, 10, lambda line: None, on_version=score)
    return {"versions": scored, "seconds": round(time.monotonic() - began, 1)}


def _run_from_scratch(
    columns: EventColumns, extra: list[str], scorer: _Scorer, step: int
) -> dict[str, Any]:
    """`walkstream batch` models of every event so far, every `step` events from half-way to
    the shift until one after it recovers; each scored as a served version is."""
    began = time.monotonic()
    settings = load_settings(overrides=parse_assignments(extra))
    shift = scorer.shift
    scored: list[dict[str, Any]] = []
    for events in range(shift // 2, len(scorer.times) + 1, step):
        newest = int(scorer.times[events - 1])
        so_far = columns.event_time <= newest
        kept = EventColumns(*(column[so_far] for column in columns))
        sequences = user_sequences(
            kept.user_id, kept.item_id, kept.rating, kept.event_time, settings.events.high_rating
        )
        result = embed_sequences(
            sequences, settings.training, settings.walks, report=lambda line: None
        )
        scored.append(scorer.score(len(scored) + 1, "full", newest, result.embeddings))
        print(f"  from scratch {len(scored)}: {scored[-1]}", flush=True)
        if _recovery(scored, shift)["events_to_recover"] is not None:
            break
    return {"versions": scored, "seconds": round(time.monotonic() - began, 1)}


def _co_ratings(sequences: Sequences, window: int) -> Replay:
    """Every pair of distinct items at most `window` apart in a user's sequence (1: the
    transitions), from the earlier to the later, at the later one's time."""
    user_of = np.repeat(np.arange(len(sequences)), sequences.lengths)
    items, times = sequences.items, sequences.times
    users, src, dst, at = [], [], [], []
    for apart in range(1, window + 1):
        first = np.arange(max(len(items) - apart, 0))
        first = first[
            (user_of[first] == user_of[first + apart]) & (items[first] != items[first + apart])
        ]
        users.append(sequences.users[user_of[first]])
        src.append(items[first])
        dst.append(items[first + apart])
        at.append(times[first + apart])
    return Replay(*(np.concatenate(parts) for parts in (users, src, dst, at)))


def _run_vote_bound(
    replay: Replay, half_life_s: float | None, forget_moved: bool, scorer: _Scorer, step: int
) -> dict[str, Any]:
    """Every `step` events from half-way to the shift: each item of the graph so far as the
    votes of its neighbours for their community in force, scored as a served version is
    (ties among items with the same votes broken by a seeded jitter). With `forget_moved`, a
    moved item's votes are those of its neighbours since the shift only."""
    began = time.monotonic()
    scored: list[dict[str, Any]] = []
    jitter = np.random.default_rng(0)
    for events in range(scorer.shift // 2, len(scorer.times) + 1, step):
        newest = int(scorer.times[events - 1])
        truth = scorer.before if newest < scorer.drift_time else scorer.after
        so_far = replay.times <= newest
        graph = decayed_graph(
            replay.src[so_far], replay.dst[so_far], replay.times[so_far], half_life_s
        )
        ids = np.array([item for item in graph.items.tolist() if item in truth], dtype=np.int64)
        labels = np.array([truth[item] for item in ids.tolist()])
        neighbours = graph.undirected(ids)
        if forget_moved and newest >= scorer.drift_time:
            since = so_far & (replay.times >= scorer.drift_time)
            moved = np.isin(ids, scorer.moved)
            recent = decayed_graph(replay.src[since], replay.dst[since], replay.times[since], None)
            neighbours = sp.diags((~moved).astype(float)) @ neighbours + sp.diags(
                moved.astype(float)
            ) @ recent.undirected(ids)
        votes = neighbours @ (labels[:, None] == np.unique(labels)).astype(float)
        votes /= np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)
        votes += 1e-6 * jitter.standard_normal(votes.shape)
        embeddings = Embeddings(ids, votes.astype(np.float32), np.zeros(len(ids), dtype=bool))
        scored.append(scorer.score(len(scored) + 1, "votes", newest, embeddings))
        print(f"  votes {len(scored)}: {scored[-1]}", flush=True)
    return {"versions": scored, "seconds": round(time.monotonic() - began, 1)}


def _wait(ready: Callable[[], bool], deadline_s: float, began: float, system: LiveSystem) -> None:
    while not ready():
        if time.monotonic() - began > deadline_s:
            print(system.log("trainer")[-3000:], file=sys.stderr)
            raise TimeoutError(f"no settled version within {deadline_s:.0f}s")
        time.sleep(1)


def _plot(result: dict[str, Any], shift: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, run in result["runs"].items():
        versions = run["versions"]
        ax.plot([v["events"] for v in versions], [v["precision"] for v in versions], ".-",
                label=f"{result['forgetting']} {name}")  # fmt: skip
    ax.axvline(shift, color="grey", linestyle="--", label="shift")
    ax.set_xlabel("events covered by the served version")
    ax.set_ylabel("same-community precision@10 (communities in force)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--communities", type=int, default=10)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--drift-share", type=float, default=0.4)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument(
        "--half-life-days", type=float, default=None, help="the decayed run's (default 30)"
    )
    parser.add_argument("--deadline", type=float, default=1800, help="seconds per run")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--offline",
        action="store_true",
        help="the trainer's cycles alone, without Kafka, Flink or Redis",
    )
    mode.add_argument(
        "--from-scratch",
        action="store_true",
        help="the bound: a batch model of every event so far, every --step events",
    )
    mode.add_argument(
        "--vote-bound",
        action="store_true",
        help="the graph's bound: items as their neighbours' votes for their true communities",
    )
    parser.add_argument(
        "--cycle-every", type=int, default=1_000, help="transitions per cycle with --offline"
    )
    parser.add_argument(
        "--step",
        type=int,
        default=2_500,
        help="events between models with --from-scratch or --vote-bound",
    )
    parser.add_argument(
        "--vote-window",
        type=int,
        default=1,
        help="with --vote-bound: items this many ratings apart in a user's sequence are neighbours",
    )
    parser.add_argument(
        "--forget-moved",
        action="store_true",
        help="with --vote-bound: instead of decay, the moved items' votes since the shift only",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for both runs, e.g. training.smoothing=0.5 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.vote_bound and args.assignments:
        parser.error("--vote-bound trains no model: it takes no --set")
    if args.vote_window < 1 or (args.vote_window > 1 and not args.vote_bound):
        parser.error("--vote-window takes a positive window, and only with --vote-bound")
    if args.forget_moved and not args.vote_bound:
        parser.error("--forget-moved is a forgetting of the votes: give --vote-bound")
    if args.forget_moved and args.half_life_days is not None:
        parser.error("--forget-moved forgets instead of decaying: it takes no --half-life-days")
    if args.out is None:
        name = (
            "drift-offline.json"
            if args.offline
            else "drift-from-scratch.json"
            if args.from_scratch
            else "drift.json"
        )
        if args.vote_bound:
            name = "drift-vote-bound" + "-forget-moved" * args.forget_moved
            name += f"-window-{args.vote_window}.json" if args.vote_window > 1 else ".json"
        args.out = ROOT / ".walkstream/bench" / name
    args.out.parent.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec(
        users=args.users,
        items=args.items,
        communities=args.communities,
        events=args.events,
        drift_share=args.drift_share,
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        data = generate(Path(tmp_dir), spec)
        before = load_communities(data.items_path)
        after = before | load_drift(Path(tmp_dir) / "drift.csv")
        rules = EventSettings()
        columns, _ = load_events(data.ratings_path, "csv", rules)
    order = np.lexsort((columns.item_id, columns.user_id, columns.event_time))
    events = [
        Event(int(columns.user_id[k]), int(columns.item_id[k]), float(columns.rating[k]),
              int(columns.event_time[k]))
        for k in order.tolist()
    ]  # fmt: skip
    times = columns.event_time[order].astype(np.int64)
    scorer = _Scorer(times, columns.item_id[order].astype(np.int64), spec.drift_time, before, after)
    shift = scorer.shift
    print(f"{len(events):,} events, {len(scorer.moved)} items move at event {shift:,}",
          flush=True)  # fmt: skip
    sequences = user_sequences(
        columns.user_id, columns.item_id, columns.rating, columns.event_time, rules.high_rating
    )
    replay = replay_transitions(sequences)
    newest_transition = int(replay.times.max())
    half_life = (30.0 if args.half_life_days is None else args.half_life_days) * DAY_S
    forgetting = "forget moved" if args.forget_moved else "decay"
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "spec": {**vars(args), "out": str(args.out)},
        "shift_at_event": shift,
        "forgetting": forgetting,
        "runs": {},
    }
    neighbours = _co_ratings(sequences, args.vote_window) if args.vote_bound else None
    for name, decay in (("off", []), ("on", [f"walks.half_life_s={half_life}"])):
        extra = [*args.assignments, *decay]
        print(f"{forgetting} {name}:", flush=True)
        if args.offline:
            run = _run_offline(replay, extra, scorer, args.cycle_every)
        elif args.from_scratch:
            run = _run_from_scratch(columns, extra, scorer, args.step)
        elif neighbours is not None:
            forget = bool(decay) and args.forget_moved
            decayed = half_life if decay and not forget else None
            run = _run_vote_bound(neighbours, decayed, forget, scorer, args.step)
        else:
            trainer_log = args.out.with_name(f"{args.out.stem}-{name}-trainer.log")
            run = _run(
                events, newest_transition, args.rate, extra, scorer, args.deadline, trainer_log
            )
        result["runs"][name] = {**run, **_recovery(run["versions"], shift)}
    off, on = (result["runs"][k]["events_to_recover"] for k in ("off", "on"))
    result["recovery_ratio"] = None if off is None or on is None else on / off
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, shift, args.out.with_suffix(".png"))
    for name, run in result["runs"].items():
        print(f"{forgetting} {name}: pre-shift precision {run['pre_shift']}, "
              f"recovered after {run['events_to_recover']} events")  # fmt: skip
    if off is not None:  # where the goal (a third of the events without decay) falls
        goal = next((v for v in result["runs"]["on"]["versions"] if v["events"] >= shift + off / 3),
                    None)  # fmt: skip
        if goal is not None:
            print(f"{forgetting} on, {goal['events'] - shift} events after the shift: "
                  f"precision {goal['precision']}; [items, precision] "
                  f"{goal['by_group']}")  # fmt: skip
    print(f"recovery with {forgetting} / without: {result['recovery_ratio']}; "
          f"{args.out}, {args.out.with_suffix('.png')}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
