"""`walkstream batch`, `walkstream eval` and `walkstream synth`: the bounded-input commands."""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from batch.evaluate import (
    RankScores,
    community_precision,
    popularity_scores,
    rank_scores,
    recent_before,
    temporal_holdout,
    user_rank_scores,
)
from batch.synthetic import SyntheticSpec, generate
from streaming.config import Settings, TrainingSettings, UserSettings, WalkSettings
from streaming.embeddings.graph import Ints, Sequences, user_sequences
from streaming.embeddings.labels import item_labels, load_communities, neighbour_table
from streaming.embeddings.users import ItemDirections, user_vectors
from streaming.embeddings.vectors import Embeddings, Vectors
from streaming.errors import ConfigError, DataError
from streaming.rating_files import FORMATS, load_events
from streaming.report import Report

if TYPE_CHECKING:
    from streaming.embeddings.pipeline import EmbedResult

__all__ = [
    "add_batch_arguments",
    "add_eval_arguments",
    "add_synth_arguments",
    "last_user_vectors",
    "run_batch",
    "run_eval",
    "run_synth",
]

_SHOW_ITEMS = 5
_SHOW_NEIGHBOURS = 5


def _add_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ratings", type=Path, required=True, help="ratings file (.gz is fine)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="csv",
        help="csv (MovieLens ratings.csv), udata, dat, jsonl",
    )


def _load_sequences(settings: Settings, args: argparse.Namespace, report: Report) -> Sequences:
    began = time.perf_counter()
    columns, load_report = load_events(
        args.ratings,
        args.format,
        settings.events,
        progress=lambda rows: report(f"  load: {rows:,} rows"),
    )
    report(f"  {'load':<10} {time.perf_counter() - began:7.2f}s")
    report(load_report.summary())
    sequences = user_sequences(*columns, settings.events.high_rating)
    if _transitions(sequences) == 0:
        raise DataError(
            f"ratings file {args.ratings}: no user rated two different items in a row at "
            f"events.high_rating={settings.events.high_rating} or more, so there is no "
            "transition to learn from: use a file with more ratings per user, or lower "
            "events.high_rating"
        )
    return sequences


def _transitions(sequences: Sequences) -> int:
    """Consecutive ratings of one user on different items: the edges the graph is built from."""
    step = sequences.items[1:] != sequences.items[:-1]
    step[sequences.indptr[1:-1] - 1] = False
    return int(step.sum())


# ---------------------------------------------------------------- batch


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    _add_input(parser)
    parser.add_argument(
        "--method", choices=["item2vec", "deepwalk", "both"], help="overrides training.method"
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--publish", action="store_true", help="also publish the vectors to Redis")


def last_user_vectors(
    sequences: Sequences, embeddings: Embeddings, users: UserSettings
) -> tuple[Ints, Vectors]:
    """The vector of every user with one: from their last `users.recent_items` kept items,
    weighted by `users.recency_decay`; users none of whose recent items has a vector are
    left out."""
    rows = np.arange(len(sequences))
    recent = recent_before(sequences, rows, sequences.indptr[1:], users.recent_items)
    vectors, has = user_vectors(recent, ItemDirections.of(embeddings), users.recency_decay)
    return sequences.users[has], vectors[has]


def _write_tsv(path: Path, ids: Ints, vectors: Vectors) -> None:
    with path.open("w") as handle:
        for key, vector in zip(ids.tolist(), vectors, strict=True):
            handle.write(f"{key}\t{' '.join(f'{x:.6g}' for x in vector.tolist())}\n")


def _write_outputs(
    out: Path, result: EmbedResult, users: tuple[Ints, Vectors], meta: dict[str, Any]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    embeddings = result.embeddings
    _write_tsv(out / "embeddings.tsv", embeddings.item_ids, embeddings.vectors)
    _write_tsv(out / "users.tsv", *users)
    np.savetxt(out / "cold_items.txt", embeddings.item_ids[embeddings.cold], fmt="%d")
    result.model.save(str(out / "word2vec.model"))  # type: ignore[attr-defined]
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def run_batch(settings: Settings, args: argparse.Namespace, report: Report = print) -> int:
    began = time.perf_counter()
    training = settings.training
    if args.method:
        training = training.model_copy(update={"method": args.method})
    report(f"batch: {args.ratings} ({args.format}), method {training.method}, seed {training.seed}")
    sequences = _load_sequences(settings, args, report)
    from streaming.embeddings.pipeline import (
        embed_sequences,  # gensim: loaded by the commands that train
    )

    result = embed_sequences(sequences, training, settings.walks, report=report)
    users = last_user_vectors(sequences, result.embeddings, settings.users)
    counts = result.counts | {
        "user_vectors": len(users[0]),
        "users_without_vector": len(sequences) - len(users[0]),
    }
    meta = {
        "input": {"path": str(args.ratings.resolve()), "format": args.format},
        "parameters": {
            "training": training.model_dump(),
            "walks": settings.walks.model_dump(),
            "high_rating": settings.events.high_rating,
            "users": settings.users.model_dump(include={"recent_items", "recency_decay"}),
        },
        "seed": training.seed,
        "counts": counts,
        "coverage": result.coverage,
        "seconds": result.seconds,
        "created_at": time.time(),
    }
    _write_outputs(args.out, result, users, meta)
    if args.publish:
        from streaming.store import connect
        from streaming.store.versions import publish_version

        version = publish_version(
            connect(settings.redis),
            settings.redis.key_prefix,
            result.embeddings.item_ids,
            result.embeddings.vectors,
            result.embeddings.item_ids[result.embeddings.cold],
            info={"source": "batch", **meta},
        )
        prefix = settings.redis.key_prefix
        report(f"  published version {version} to {settings.redis.url} (prefix {prefix})")
    report(
        f"batch: {counts['vectors']:,} vectors (dim {result.embeddings.dim}), "
        f"{counts['cold']:,} cold, coverage {result.coverage:.1%} of {counts['items']:,} items "
        f"in {counts['transitions']:,} transitions; {counts['user_vectors']:,} user vectors "
        f"({counts['users_without_vector']:,} users without a known item); wrote {args.out} in "
        f"{time.perf_counter() - began:.1f}s"
    )
    popular = np.unique(sequences.items, return_counts=True)
    top = popular[0][np.argsort(-popular[1], kind="stable")][:_SHOW_ITEMS].tolist()
    report("nearest neighbours of the most-rated items:")
    report(neighbour_table(result.embeddings, top, item_labels(args.ratings), _SHOW_NEIGHBOURS))
    return 0


# ---------------------------------------------------------------- eval

REFERENCE = {
    "sg": True,
    "hs": True,
    "negative": 0,
    "vector_size": 10,
    "window": 5,
    "epochs": 10,
    "min_count": 5,
    "smoothing": 0.0,
}


USERS_GRID = "1,3,5,10,20,50:1,0.9,0.8,0.7,0.6,0.5,0.4,0.3"


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    _add_input(parser)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="an extra configuration to compare, e.g. 'dim32:training.vector_size=32,"
        "walks.n_walks=50000' (keys: training.*, walks.*, fill_cold)",
    )
    parser.add_argument(
        "--only-variants", action="store_true", help="skip the default and reference configurations"
    )
    parser.add_argument("--communities", type=Path, help="items.csv with planted communities")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("-k", type=int, default=10, help="cut-off of HR@k and NDCG@k")
    parser.add_argument(
        "--users-grid",
        nargs="?",
        const=USERS_GRID,
        metavar="N,...:DECAY,...",
        help="also score user vectors at every users.recent_items N and users.recency_decay "
        f"DECAY of the grid, for every configuration (without a value: {USERS_GRID})",
    )
    replay = parser.add_argument_group(
        "prequential (--prequential): replay in event-time order, test then train, under the "
        "update policies stream, nightly and static"
    )
    replay.add_argument(
        "--prequential", action="store_true", help="replay the file instead of a hold-out"
    )
    replay.add_argument(
        "--cycle-every",
        type=int,
        metavar="N",
        help="stream: a trainer cycle every N transitions (default: trainer.min_new_samples "
        "samples, each transition bringing 1 + stream.walks_per_weight of them)",
    )
    replay.add_argument(
        "--nightly-min-new",
        type=int,
        metavar="M",
        help="nightly: a day boundary retrains only after M new transitions; the others add "
        "cold items (default: --cycle-every)",
    )
    replay.add_argument(
        "--plot",
        type=Path,
        default=Path("prequential.png"),
        help="the per-month HR@k curve of every policy (PNG)",
    )


def _variant(settings: Settings, spec: str) -> tuple[str, TrainingSettings, WalkSettings, bool]:
    name, sep, assignments = spec.partition(":")
    if not sep or not name:
        raise ConfigError(f"--variant expects NAME:KEY=VALUE,..., got {spec!r}")
    training: dict[str, Any] = settings.training.model_dump()
    walks: dict[str, Any] = settings.walks.model_dump()
    fill_cold = True
    for assignment in filter(None, assignments.split(",")):
        key, eq, value = assignment.partition("=")
        section, dot, field = key.strip().partition(".")
        if key.strip() == "fill_cold" and eq:
            fill_cold = value.strip().lower() in {"1", "true", "yes"}
        elif eq and dot and section in {"training", "walks"}:
            {"training": training, "walks": walks}[section][field] = value.strip()
        else:
            raise ConfigError(f"--variant {name}: cannot set {assignment!r}")
    try:
        return name, TrainingSettings(**training), WalkSettings(**walks), fill_cold
    except ValueError as exc:
        raise ConfigError(f"--variant {name}: {exc}") from None


def _variants(
    settings: Settings, args: argparse.Namespace
) -> list[tuple[str, TrainingSettings, WalkSettings, bool]]:
    variants = []
    if not args.only_variants:
        seed, workers = settings.training.seed, settings.training.workers
        reference = {**REFERENCE, "seed": seed, "workers": workers}
        reference_walks = WalkSettings(n_walks=20_000, length=10)
        variants += [
            ("walkstream", settings.training, settings.walks, True),
            (
                "reference-item2vec",
                TrainingSettings(method="item2vec", **reference),
                reference_walks,
                False,
            ),
            (
                "reference-deepwalk",
                TrainingSettings(method="deepwalk", **reference),
                reference_walks,
                False,
            ),
        ]
    variants += [_variant(settings, spec) for spec in args.variant]
    if not variants:
        raise ConfigError("nothing to evaluate: give --variant, or drop --only-variants")
    return variants


def _users_grid(spec: str) -> list[UserSettings]:
    limits, sep, decays = spec.partition(":")
    try:
        if not sep:
            raise ValueError("expected N,...:DECAY,...")
        return [
            UserSettings(recent_items=int(limit), recency_decay=float(decay))
            for limit in limits.split(",")
            for decay in decays.split(",")
        ]
    except ValueError as exc:
        raise ConfigError(f"--users-grid {spec!r}: {exc}") from None


def _row(name: str, scores: RankScores, extra: dict[str, Any]) -> dict[str, Any]:
    return {"variant": name, **asdict(scores), **extra}


def _users(users: UserSettings) -> dict[str, Any]:
    return users.model_dump(include={"recent_items", "recency_decay"})


def format_grid(name: str, grid: list[dict[str, Any]], k: int) -> str:
    """One configuration's user-vector HR@k / NDCG@k, a row per recent_items, a column per
    decay."""
    limits = sorted({row["recent_items"] for row in grid})
    decays = sorted({row["recency_decay"] for row in grid}, reverse=True)
    cell = {(row["recent_items"], row["recency_decay"]): row for row in grid}
    lines = [
        f"user vectors of {name}: HR@{k} / NDCG@{k} by users.recent_items (rows) and "
        "users.recency_decay (columns)",
        f"{'':>6}" + "".join(f"{decay:>16g}" for decay in decays),
    ]
    for limit in limits:
        scores = (cell[limit, decay] for decay in decays)
        lines.append(
            f"{limit:>6}" + "".join(f"{row['hit_rate']:>9.4f}/{row['ndcg']:.4f}" for row in scores)
        )
    best = max(grid, key=lambda row: (row["hit_rate"], row["ndcg"]))
    lines.append(
        f"best HR@{k}: recent_items {best['recent_items']}, recency_decay "
        f"{best['recency_decay']:g} ({best['hit_rate']:.4f} / {best['ndcg']:.4f})"
    )
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]], k: int) -> str:
    header = (
        f"{'variant':<26}{f'HR@{k}':>8}{f'NDCG@{k}':>9}{'answerable':>12}{'coverage':>10}"
        f"{'cold':>7}{f'P@{k} comm':>10}{'train s':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        community = row.get("community_precision")
        lines.append(
            f"{row['variant']:<26}{row['hit_rate']:8.4f}{row['ndcg']:9.4f}"
            f"{row['answerable']:>6}/{row['cases']:<5}"
            f"{format(row['coverage'], '10.1%') if 'coverage' in row else '-':>10}"
            f"{row.get('cold', '-'):>7}"
            f"{'' if community is None else f'{community:.3f}':>10}"
            f"{row.get('seconds', 0.0):9.1f}"
        )
    return "\n".join(lines)


def run_eval(settings: Settings, args: argparse.Namespace, report: Report = print) -> int:
    if args.prequential:
        return _run_prequential(settings, args, report)
    grid = _users_grid(args.users_grid) if args.users_grid else []
    report(f"eval: {args.ratings} ({args.format}), per-user temporal hold-out of the last 20%")
    sequences = _load_sequences(settings, args, report)
    holdout = temporal_holdout(sequences)
    if len(holdout.queries) == 0:
        raise DataError(
            f"ratings file {args.ratings}: no user has 3 or more ratings of at least "
            f"events.high_rating={settings.events.high_rating}, so the hold-out has no next-item "
            "case to score: use a file with more ratings per user, or lower events.high_rating"
        )
    report(f"  {len(holdout.queries):,} next-item cases from {len(sequences):,} users")
    communities_path = args.communities or (
        args.ratings.with_name("items.csv")
        if args.ratings.with_name("items.csv").is_file()
        else None
    )
    communities = load_communities(communities_path) if communities_path else None
    rows = [
        _row(
            "popularity",
            popularity_scores(holdout.train, holdout.queries, holdout.answers, args.k),
            {"query": "popularity"},
        )
    ]
    grids: list[dict[str, Any]] = []
    for name, training, walks, fill_cold in _variants(settings, args):
        report(f"  training {name} ...")
        began = time.perf_counter()
        from streaming.embeddings.pipeline import embed_sequences

        result = embed_sequences(holdout.train, training, walks, fill_cold, report=lambda _: None)
        seconds = time.perf_counter() - began
        scores = rank_scores(result.embeddings, holdout.queries, holdout.answers, args.k)
        extra: dict[str, Any] = {
            "query": "previous-item",
            "coverage": result.coverage,
            "cold": result.counts["cold"],
            "seconds": round(seconds, 2),
            "training": training.model_dump(),
            "walks": walks.model_dump(),
            "fill_cold": fill_cold,
        }
        if communities is not None:
            extra["community_precision"] = community_precision(
                result.embeddings, communities, args.k
            )
        rows.append(_row(name, scores, extra))
        users = user_rank_scores(
            result.embeddings,
            holdout,
            settings.users.recent_items,
            settings.users.recency_decay,
            args.k,
        )
        extra.pop("community_precision", None)  # of the items, shown on the row above
        extra |= {"query": "user", "users": _users(settings.users)}
        rows.append(_row(f"{name}:user", users, extra))
        grids += [
            {
                "variant": name,
                **_users(point),
                **asdict(
                    user_rank_scores(
                        result.embeddings,
                        holdout,
                        point.recent_items,
                        point.recency_decay,
                        args.k,
                    )
                ),
            }
            for point in grid
        ]
    report(format_table(rows, args.k))
    for name in dict.fromkeys(row["variant"] for row in grids):
        report(format_grid(name, [row for row in grids if row["variant"] == name], args.k))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result_json: dict[str, Any] = {"k": args.k, "results": rows}
        if grids:
            result_json["users_grid"] = grids
        args.json.write_text(json.dumps(result_json, indent=2) + "\n")
        report(f"eval: results written to {args.json}")
    return 0


def _run_prequential(settings: Settings, args: argparse.Namespace, report: Report) -> int:
    if args.variant or args.only_variants or args.communities or args.users_grid:
        raise ConfigError(
            "--prequential takes no --variant, --only-variants, --communities or --users-grid"
        )
    per_transition = 1 + settings.stream.walks_per_weight
    cycle_every = args.cycle_every or math.ceil(settings.trainer.min_new_samples / per_transition)
    nightly_min_new = args.nightly_min_new or cycle_every
    if cycle_every < 1 or nightly_min_new < 1 or args.k < 1:
        raise ConfigError("--cycle-every, --nightly-min-new and -k must be positive")
    report(
        f"eval: {args.ratings} ({args.format}), prequential: stream cycles every {cycle_every:,} "
        f"transitions; nightly retrains at day boundaries after {nightly_min_new:,} new "
        "transitions (cold items at the others); static on the first half of the time range"
    )
    sequences = _load_sequences(settings, args, report)
    from batch.prequential import draw_months, format_tables, prequential, summary

    replay, outcomes = prequential(
        sequences, settings, cycle_every, nightly_min_new, args.k, lambda line: report(line)
    )
    policies = summary(replay, outcomes)
    report(format_tables(policies, args.k))
    stream, nightly, static = (policies[name] for name in ("stream", "nightly", "static"))
    report(
        f"eval: stream / nightly HR@{args.k} overall "
        f"{_ratio(stream['hit_rate'], nightly['hit_rate'])}, stream / static after the "
        f"midpoint {_ratio(stream['second_half']['hit_rate'], static['second_half']['hit_rate'])}"
        f"; same-day slice ({stream['fresh']['cases']:,} of {len(replay):,} transitions): "
        f"stream {stream['fresh']['hit_rate']:.4f}, nightly {nightly['fresh']['hit_rate']:.4f}"
    )
    title = f"prequential HR@{args.k} per month: {args.ratings.name}"
    report(f"eval: per-month curve drawn in {draw_months(args.plot, policies, args.k, title)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "k": args.k,
            "transitions": len(replay),
            "cycle_every": cycle_every,
            "nightly_min_new": nightly_min_new,
            "midpoint": replay.midpoint,
            "training": settings.training.model_dump(),
            "walks": settings.walks.model_dump(),
            "policies": policies,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        report(f"eval: results written to {args.json}")
    return 0


def _ratio(a: float, b: float) -> str:
    return f"x{a / b:.2f}" if b else "-"


# ---------------------------------------------------------------- synth


def add_spec_arguments(parser: argparse._ActionsContainer, defaults: SyntheticSpec) -> None:
    """The synthetic data's shape as flags (`synth`, and `demo` without a ratings file)."""
    meanings = {
        "users": "users who rate",
        "items": "items they rate",
        "communities": "planted item communities",
        "events": "rating events",
        "seed": "random seed: the same seed gives the same file",
    }
    for name, meaning in meanings.items():
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name), help=meaning)
    floats = {
        "noise": "share of ratings outside the user's communities",
        "launch_share": "share of each community's items launched during the year, evenly "
        "over its days; half the on-taste ratings go to one launched the day before, if any",
        "drift_share": "share of the items that move to another community at --drift-at",
        "drift_at": "when the items move, as a fraction of the year users start in",
    }
    for name, meaning in floats.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name), help=meaning
        )


def spec_from_arguments(args: argparse.Namespace) -> SyntheticSpec:
    try:
        return SyntheticSpec(
            users=args.users,
            items=args.items,
            communities=args.communities,
            events=args.events,
            noise=args.noise,
            seed=args.seed,
            launch_share=args.launch_share,
            drift_share=args.drift_share,
            drift_at=args.drift_at,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    add_spec_arguments(parser, SyntheticSpec())


def run_synth(settings: Settings, args: argparse.Namespace, report: Report = print) -> int:
    spec = spec_from_arguments(args)
    began = time.perf_counter()
    result = generate(
        args.out,
        spec,
        progress=lambda done, total: report(f"  synth: {done:,}/{total:,} events"),
    )
    report(
        f"synth: {result.events:,} events by {result.users:,} users on {result.items:,} items in "
        f"{result.communities} communities -> {result.ratings_path} "
        f"({time.perf_counter() - began:.1f}s)"
    )
    return 0
