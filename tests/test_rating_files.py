from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

import streaming.rating_files as rating_files
from streaming.config import EventSettings
from streaming.core.events import Event, Reason
from streaming.errors import DataError, WalkstreamError
from streaming.rating_files import (
    EventColumns,
    Format,
    LoadReport,
    Rejected,
    iter_events,
    load_events,
)

RULES = EventSettings()
ML_SMALL = Path("/work/shared/data/ml-latest-small/ratings.csv")

# The same three events in every format.
EXPECTED = [Event(1, 10, 4.0, 964982703), Event(1, 20, 3.5, 964981247), Event(7, 10, 0.5, 0)]
SEP = {"csv": ",", "udata": "\t", "dat": "::"}


def row(fmt: Format, user: object, item: object, rating: object, when: object) -> str:
    if fmt == "jsonl":
        return json.dumps({"user_id": user, "item_id": item, "rating": rating, "event_time": when})
    return SEP[fmt].join(str(value) for value in (user, item, rating, when))


def good_lines(fmt: Format) -> list[str]:
    return [row(fmt, *event) for event in EXPECTED]


def write(path: Path, lines: list[str], *, end: str = "\n") -> Path:
    path.write_bytes((end.join(lines) + end).encode())
    return path


def assert_columns(columns: EventColumns, events: list[Event]) -> None:
    assert columns.size == len(events)
    assert columns.user_id.dtype == np.int64
    assert columns.item_id.dtype == np.int64
    assert columns.rating.dtype == np.float64
    assert columns.event_time.dtype == np.int64
    assert columns.user_id.tolist() == [e.user_id for e in events]
    assert columns.item_id.tolist() == [e.item_id for e in events]
    assert columns.rating.tolist() == [e.rating for e in events]
    assert columns.event_time.tolist() == [e.event_time for e in events]


def rejected_lines(report: LoadReport) -> list[tuple[int, Reason]]:
    return [(r.line_no, r.reason) for r in report.examples]


@pytest.mark.parametrize("fmt", ["csv", "udata", "dat", "jsonl"])
def test_every_format_parses_to_the_exact_columns(tmp_path: Path, fmt: Format) -> None:
    path = write(tmp_path / f"ratings.{fmt}", good_lines(fmt))
    columns, report = load_events(path, fmt, RULES)
    assert_columns(columns, EXPECTED)
    assert (report.rows, report.accepted, report.rejected) == (3, 3, {})
    assert report.path == path
    assert report.format == fmt
    assert report.header is None


@pytest.mark.parametrize("fmt", ["csv", "udata", "dat", "jsonl"])
def test_gzip_is_read_transparently(tmp_path: Path, fmt: Format) -> None:
    path = tmp_path / f"ratings.{fmt}.gz"
    path.write_bytes(gzip.compress("\n".join(good_lines(fmt)).encode() + b"\n"))
    columns, report = load_events(path, fmt, RULES)
    assert_columns(columns, EXPECTED)
    assert report.rows == 3


def test_csv_header_is_skipped_and_line_numbers_stay_physical(tmp_path: Path) -> None:
    lines = ["userId,movieId,rating,timestamp", *good_lines("csv"), "1,2,9,3"]
    columns, report = load_events(write(tmp_path / "r.csv", lines, end="\r\n"), "csv", RULES)
    assert_columns(columns, EXPECTED)
    assert report.header == "userId,movieId,rating,timestamp"
    assert report.rows == 4
    assert rejected_lines(report) == [(5, Reason.RATING_OUT_OF_RANGE)]


def test_csv_header_after_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"\xef\xbb\xbfuserId,movieId,rating,timestamp\n1,10,4.0,964982703\n")
    columns, report = load_events(path, "csv", RULES)
    assert_columns(columns, EXPECTED[:1])
    assert report.header == "userId,movieId,rating,timestamp"


def test_csv_first_line_with_a_number_is_a_row_not_a_header(tmp_path: Path) -> None:
    lines = ["1,abc,4.0,964982703", *good_lines("csv")]
    columns, report = load_events(write(tmp_path / "r.csv", lines), "csv", RULES)
    assert_columns(columns, EXPECTED)
    assert report.header is None
    assert report.rows == 4
    assert rejected_lines(report) == [(1, Reason.WRONG_TYPE)]


@pytest.mark.parametrize("fmt", ["udata", "dat"])
def test_headerless_formats_never_skip_the_first_line(tmp_path: Path, fmt: Format) -> None:
    header = SEP[fmt].join(["user", "item", "rating", "time"])
    _, report = load_events(write(tmp_path / "r", [header, *good_lines(fmt)]), fmt, RULES)
    assert (report.rows, report.accepted, report.header) == (4, 3, None)
    assert rejected_lines(report) == [(1, Reason.WRONG_TYPE)]


def test_quoted_csv_fields_fall_back_to_the_csv_module(tmp_path: Path) -> None:
    lines = ['"1","10","4.0","964982703"', '1,20,"3.5",964981247', "7,10,0.5,0"]
    columns, report = load_events(write(tmp_path / "r.csv", lines), "csv", RULES)
    assert_columns(columns, EXPECTED)
    assert report.rejected == {}


FIELD_ERRORS: list[tuple[str, tuple[object, ...], Reason]] = [
    ("non-numeric user", ("u1", 10, 4.0, 5), Reason.WRONG_TYPE),
    ("non-numeric item", (1, "x", 4.0, 5), Reason.WRONG_TYPE),
    ("fractional id", (1, 2.5, 4.0, 5), Reason.WRONG_TYPE),
    ("negative id", (-1, 10, 4.0, 5), Reason.BAD_ID),
    ("id above int64", (1, 2**63, 4.0, 5), Reason.BAD_ID),
    ("nan rating", (1, 10, "nan", 5), Reason.RATING_NOT_FINITE),
    ("infinite rating", (1, 10, "inf", 5), Reason.RATING_NOT_FINITE),
    ("rating too high", (1, 10, 5.5, 5), Reason.RATING_OUT_OF_RANGE),
    ("rating too low", (1, 10, -0.5, 5), Reason.RATING_OUT_OF_RANGE),
    ("non-numeric rating", (1, 10, "good", 5), Reason.WRONG_TYPE),
    ("negative timestamp", (1, 10, 4.0, -1), Reason.BAD_EVENT_TIME),
    ("millisecond timestamp", (1, 10, 4.0, 964982703000), Reason.BAD_EVENT_TIME),
]


@pytest.mark.parametrize("fmt", ["csv", "udata", "dat"])
@pytest.mark.parametrize(
    ("values", "reason"),
    [(values, reason) for _, values, reason in FIELD_ERRORS],
    ids=[name for name, _, _ in FIELD_ERRORS],
)
def test_bad_text_fields_are_rejected_with_their_reason(
    tmp_path: Path, fmt: Format, values: tuple[object, ...], reason: Reason
) -> None:
    good = good_lines(fmt)
    lines = [good[0], row(fmt, *values), good[1], good[2]]
    columns, report = load_events(write(tmp_path / "r", lines), fmt, RULES)
    assert_columns(columns, EXPECTED)
    assert (report.rows, report.accepted) == (4, 3)
    assert report.rejected == {reason.value: 1}
    assert rejected_lines(report) == [(2, reason)]
    assert report.examples[0].text == row(fmt, *values)


@pytest.mark.parametrize("fmt", ["csv", "udata", "dat"])
@pytest.mark.parametrize("count", [1, 3, 5])
def test_wrong_column_count_is_a_bad_row(tmp_path: Path, fmt: Format, count: int) -> None:
    bad = SEP[fmt].join(str(n) for n in range(1, count + 1))
    lines = [*good_lines(fmt)[:2], bad, good_lines(fmt)[2]]
    columns, report = load_events(write(tmp_path / "r", lines), fmt, RULES)
    assert_columns(columns, EXPECTED)
    assert rejected_lines(report) == [(3, Reason.BAD_ROW)]
    assert f"got {count}" in report.examples[0].detail


def test_wrong_separator_is_a_bad_row(tmp_path: Path) -> None:
    lines = ["1,10,4.0,964982703", *good_lines("udata")]
    _, report = load_events(write(tmp_path / "u.data", lines), "udata", RULES)
    assert rejected_lines(report) == [(1, Reason.BAD_ROW)]


JSON_ERRORS: list[tuple[str, str, Reason]] = [
    ("bad json", '{"user_id": 1,', Reason.BAD_JSON),
    ("not json at all", "1,10,4.0,5", Reason.BAD_JSON),
    ("deeply nested", "[" * 1000, Reason.BAD_JSON),
    ("array", "[1, 10, 4.0, 5]", Reason.NOT_AN_OBJECT),
    ("number", "42", Reason.NOT_AN_OBJECT),
    ("missing field", '{"user_id": 1, "item_id": 10, "rating": 4.0}', Reason.MISSING_FIELD),
    ("string id", row("jsonl", "1", 10, 4.0, 5), Reason.WRONG_TYPE),
    ("bool id", row("jsonl", True, 10, 4.0, 5), Reason.WRONG_TYPE),
    ("float time", row("jsonl", 1, 10, 4.0, 5.5), Reason.WRONG_TYPE),
    ("string rating", row("jsonl", 1, 10, "4.0", 5), Reason.WRONG_TYPE),
    ("null rating", row("jsonl", 1, 10, None, 5), Reason.WRONG_TYPE),
    ("nan rating", row("jsonl", 1, 10, float("nan"), 5), Reason.RATING_NOT_FINITE),
    ("rating too high", row("jsonl", 1, 10, 6, 5), Reason.RATING_OUT_OF_RANGE),
    ("negative id", row("jsonl", 1, -10, 4.0, 5), Reason.BAD_ID),
    ("ms timestamp", row("jsonl", 1, 10, 4.0, 964982703000), Reason.BAD_EVENT_TIME),
    (
        "oversized",
        row("jsonl", 1, 10, 4.0, 5)[:-1] + ', "pad": "' + "x" * 1100 + '"}',
        Reason.OVERSIZED,
    ),
]


@pytest.mark.parametrize(
    ("line", "reason"),
    [(line, reason) for _, line, reason in JSON_ERRORS],
    ids=[name for name, _, _ in JSON_ERRORS],
)
def test_bad_json_lines_are_rejected_with_their_reason(
    tmp_path: Path, line: str, reason: Reason
) -> None:
    good = good_lines("jsonl")
    lines = [good[0], good[1], line, good[2]]
    columns, report = load_events(write(tmp_path / "r.jsonl", lines), "jsonl", RULES)
    assert_columns(columns, EXPECTED)
    assert (report.rows, report.accepted) == (4, 3)
    assert report.rejected == {reason.value: 1}
    assert rejected_lines(report) == [(3, reason)]
    assert report.examples[0].text == line[:200]


def test_json_lines_ignore_extra_fields(tmp_path: Path) -> None:
    line = '{"user_id": 1, "item_id": 10, "rating": 4, "event_time": 964982703, "src": "app"}'
    columns, _ = load_events(write(tmp_path / "r.jsonl", [line]), "jsonl", RULES)
    assert_columns(columns, EXPECTED[:1])


@pytest.mark.parametrize("fmt", ["csv", "udata", "dat", "jsonl"])
def test_blank_lines_are_bad_rows_but_the_final_newline_is_not(tmp_path: Path, fmt: Format) -> None:
    good = good_lines(fmt)
    lines = [good[0], "", good[1], "   ", good[2]]
    columns, report = load_events(write(tmp_path / "r", lines, end="\r\n"), fmt, RULES)
    assert_columns(columns, EXPECTED)
    assert (report.rows, report.accepted) == (5, 3)
    assert report.rejected == {"bad_row": 2}
    assert rejected_lines(report) == [(2, Reason.BAD_ROW), (4, Reason.BAD_ROW)]


def test_a_missing_final_newline_keeps_the_last_row(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("\n".join(good_lines("udata")))
    columns, report = load_events(path, "udata", RULES)
    assert_columns(columns, EXPECTED)
    assert report.rows == 3


def test_a_trailing_blank_line_is_counted_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("\n".join(good_lines("udata")) + "\n\n")
    _, report = load_events(path, "udata", RULES)
    assert (report.rows, report.accepted) == (4, 3)
    assert rejected_lines(report) == [(4, Reason.BAD_ROW)]


def test_a_file_without_a_valid_row_raises_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        load_events(write(tmp_path / "empty.csv", [], end=""), "csv", RULES)
    header = write(tmp_path / "header.csv", ["userId,movieId,rating,timestamp"])
    with pytest.raises(DataError, match="has only a header line"):
        load_events(header, "csv", RULES)
    lines = ["1,10,9,5", "1::2::4::5", "\xff"]
    with pytest.raises(DataError) as raised:
        load_events(write(tmp_path / "r.csv", lines), "csv", RULES)
    message = str(raised.value)
    assert "\n" not in message
    assert "all 3 rows rejected as csv (bad_row 2, rating_out_of_range 1; line 1: rating" in message
    assert "check --format (csv, udata, dat, jsonl)" in message


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("length", [1025, 1026, 1027, 5000, 2_000_000])
def test_oversized_lines_are_skipped_with_their_exact_size(
    tmp_path: Path, fmt: Format, length: int
) -> None:
    good = good_lines(fmt)
    lines = [good[0], "9" * length, good[1], good[2]]
    columns, report = load_events(write(tmp_path / "r", lines, end="\r\n"), fmt, RULES)
    assert_columns(columns, EXPECTED)
    assert rejected_lines(report) == [(2, Reason.OVERSIZED)]
    assert report.examples[0].detail == f"line has {length} bytes, more than 1024"
    assert report.examples[0].text == "9" * 200


def test_a_line_at_the_size_limit_is_accepted(tmp_path: Path) -> None:
    line = row("jsonl", 1, 10, 4.0, 964982703)
    line = line[:-1] + ', "pad": "' + "x" * (1024 - len(line) - 11) + '"}'
    assert len(line) == 1024
    columns, report = load_events(write(tmp_path / "r.jsonl", [line], end="\r\n"), "jsonl", RULES)
    assert_columns(columns, EXPECTED[:1])
    assert report.rejected == {}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_invalid_utf8_is_bad_encoding(tmp_path: Path, fmt: Format) -> None:
    path = tmp_path / "r"
    good = [line.encode() for line in good_lines(fmt)]
    path.write_bytes(b"\n".join([good[0], b"1,\xff\xfe,4.0,5", good[1], good[2]]) + b"\n")
    columns, report = load_events(path, fmt, RULES)
    assert_columns(columns, EXPECTED)
    assert rejected_lines(report) == [(2, Reason.BAD_ENCODING)]
    assert report.examples[0].text == "1,\ufffd\ufffd,4.0,5"


def test_many_kinds_of_bad_rows_in_one_file(tmp_path: Path) -> None:
    lines = [
        "userId,movieId,rating,timestamp",  # 1: header
        "1,10,4.0,964982703",  # 2
        "1,10,4.0",  # 3: bad_row
        "",  # 4: bad_row
        "x,10,4.0,5",  # 5: wrong_type
        "1,20,3.5,964981247",  # 6
        "1,10,NaN,5",  # 7: rating_not_finite
        "1,10,9,5",  # 8: rating_out_of_range
        "1,10,4,964982703000",  # 9: bad_event_time
        "7,10,0.5,0",  # 10
    ]
    columns, report = load_events(write(tmp_path / "r.csv", lines), "csv", RULES)
    assert_columns(columns, EXPECTED)
    assert (report.rows, report.accepted) == (9, 3)
    assert report.rejected == {
        "bad_row": 2,
        "wrong_type": 1,
        "rating_not_finite": 1,
        "rating_out_of_range": 1,
        "bad_event_time": 1,
    }
    assert rejected_lines(report) == [
        (3, Reason.BAD_ROW),
        (4, Reason.BAD_ROW),
        (5, Reason.WRONG_TYPE),
        (7, Reason.RATING_NOT_FINITE),
        (8, Reason.RATING_OUT_OF_RANGE),
        (9, Reason.BAD_EVENT_TIME),
    ]
    summary = report.summary()
    assert "9 rows, 3 accepted, 6 rejected" in summary
    assert "  bad_row: 2\n" in summary
    assert "line 9: bad_event_time:" in summary
    assert "milliseconds?" in summary


def test_only_the_first_ten_rejections_are_kept_as_examples(tmp_path: Path) -> None:
    lines = [f"{n},10,9,5" for n in range(25)]
    _, report = load_events(write(tmp_path / "r.csv", [*lines, "1,10,4,5"]), "csv", RULES)
    assert report.rejected == {"rating_out_of_range": 25}
    assert [r.line_no for r in report.examples] == list(range(1, 11))


def test_rejected_text_is_truncated_to_200_characters(tmp_path: Path) -> None:
    line = "1,2,3," + "4" * 500
    _, report = load_events(write(tmp_path / "r.csv", [line, "1,10,4,5"]), "csv", RULES)
    assert report.examples == [
        Rejected(1, Reason.BAD_EVENT_TIME, report.examples[0].detail, line[:200])
    ]


def test_rules_come_from_the_settings(tmp_path: Path) -> None:
    rules = EventSettings(min_rating=1.0, max_rating=10.0, high_rating=5.0)
    lines = ["1,10,0.5,5", "1,10,10,5"]
    columns, report = load_events(write(tmp_path / "r.csv", lines), "csv", rules)
    assert columns.rating.tolist() == [10.0]
    assert rejected_lines(report) == [(1, Reason.RATING_OUT_OF_RANGE)]


@pytest.mark.parametrize("fmt", ["csv", "udata", "dat", "jsonl"])
def test_iter_events_yields_what_load_events_loads(tmp_path: Path, fmt: Format) -> None:
    good = good_lines(fmt)
    lines = [good[0], "", good[1], row(fmt, 1, 10, 9, 5), good[2]]
    path = write(tmp_path / "r", lines)
    streamed = list(iter_events(path, fmt, RULES))
    columns, report = load_events(path, fmt, RULES)
    events = [item for item in streamed if isinstance(item, Event)]
    rejected = [item for item in streamed if isinstance(item, Rejected)]
    assert events == EXPECTED
    assert_columns(columns, events)
    assert rejected == report.examples
    assert [r.line_no for r in rejected] == [2, 4]
    assert len(streamed) == report.rows


def test_progress_is_reported_periodically_and_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rating_files, "_PROGRESS_EVERY", 2)
    lines = ["userId,movieId,rating,timestamp", *good_lines("csv"), "bad", "7,10,0.5,0"]
    seen: list[int] = []
    load_events(write(tmp_path / "r.csv", lines), "csv", RULES, progress=seen.append)
    assert seen == [2, 4, 5]


def test_missing_file_raises_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_events(tmp_path / "nope.csv", "csv", RULES)
    with pytest.raises(DataError, match="does not exist"):
        iter_events(tmp_path / "nope.csv", "csv", RULES)
    with pytest.raises(DataError, match="not a file"):
        load_events(tmp_path, "csv", RULES)


def test_unknown_format_raises_a_data_error(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", good_lines("csv"))
    with pytest.raises(WalkstreamError, match="use one of csv, udata, dat, jsonl"):
        load_events(path, "parquet", RULES)  # type: ignore[arg-type]


def test_corrupt_gzip_raises_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.gz"
    path.write_bytes(b"this is not gzip\n")
    with pytest.raises(DataError, match="gzip -t"):
        load_events(path, "csv", RULES)
    truncated = tmp_path / "t.csv.gz"
    truncated.write_bytes(gzip.compress(b"1,10,4.0,964982703\n" * 1000)[:-20])
    with pytest.raises(DataError, match="not a complete gzip file"):
        load_events(truncated, "csv", RULES)


@pytest.mark.skipif(not ML_SMALL.exists(), reason=f"{ML_SMALL} is not downloaded")
def test_movielens_latest_small_loads_completely() -> None:
    columns, report = load_events(ML_SMALL, "csv", RULES)
    assert (report.rows, report.accepted, report.rejected) == (100_836, 100_836, {})
    assert columns.size == 100_836
    assert (columns.user_id[0], columns.item_id[0], columns.rating[0]) == (1, 1, 4.0)
    assert columns.event_time[0] == 964982703
