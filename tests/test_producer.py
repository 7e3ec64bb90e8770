import json
import time
from pathlib import Path

import pytest

from streaming.config import Settings, load_settings
from streaming.core.events import Event, InvalidEventError, Reason
from streaming.errors import ProducerError
from streaming.producer import Pacer, RatingProducer, produce_file
from streaming.records import event_from_json
from tests.kafka_records import read_topic
from tests.ports import free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_pacer_at_a_fixed_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=4, clock=clock, sleep=clock.sleep)
    for index in range(5):
        pacer.wait(index, event_time=0)
    assert clock.slept == [0.25, 0.25, 0.25, 0.25]


def test_pacer_replays_event_time_faster() -> None:
    clock = FakeClock()
    pacer = Pacer(speedup=60, clock=clock, sleep=clock.sleep)
    for index, when in enumerate([1000, 1060, 1060, 1240]):
        pacer.wait(index, when)
    assert clock.slept == [1.0, 3.0]


def test_pacer_rejects_both_or_bad_values() -> None:
    with pytest.raises(ValueError, match="not both"):
        Pacer(rate=1, speedup=1)
    with pytest.raises(ValueError, match="positive"):
        Pacer(rate=0)


@pytest.mark.integration
def test_file_is_sent_in_event_time_order_keyed_by_user(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    ratings = tmp_path / "ratings.csv"
    rows = [(u, i, 4.0, 1000 - 7 * i + u) for u in range(1, 30) for i in range(1, 20)]
    ratings.write_text(
        "userId,movieId,rating,timestamp\n"
        + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
        + "5,5,not-a-rating,100\n"
    )
    result = produce_file(local_stack, ratings, "csv", topic=unique, report=lambda _: None)
    assert (result.sent, result.rejected) == (len(rows), 1)
    records = [(p, key, value) for p, _, _, key, value in read_topic(local_stack, unique)]
    events = [event_from_json(value, local_stack.events) for _, _, value in records]
    assert sorted(events) == sorted(Event(u, i, r, t) for u, i, r, t in rows)
    for _, key, value in records:
        assert key == str(json.loads(value)["user_id"]).encode()
    by_partition: dict[int, list[int]] = {}
    for (partition, _, _), event in zip(records, events, strict=True):
        by_partition.setdefault(partition, []).append(event.event_time)
    assert len(by_partition) > 1
    for times in by_partition.values():
        assert times == sorted(times)


def test_undelivered_events_are_an_error_that_says_what_to_check() -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = load_settings(overrides={"kafka": {"bootstrap_servers": nowhere}})
    producer = RatingProducer(settings, "nowhere")
    producer.send(Event(1, 2, 4.5, 10))
    with pytest.raises(ProducerError, match=r"1 events not yet acknowledged.*walkstream status"):
        producer.close(timeout_s=1)
    producer.close()  # closed already, undelivered events dropped: nothing left to raise
    with pytest.raises(ProducerError, match=r"is closed: send before close\(\)"):
        producer.send(Event(1, 2, 4.5, 11))
    with pytest.raises(ProducerError, match="is closed"):
        producer.flush()


@pytest.mark.integration
def test_application_api_validates_before_sending(local_stack: Settings, unique: str) -> None:
    with RatingProducer(local_stack, unique) as producer:
        producer.send({"user_id": 1, "item_id": 2, "rating": 4.5, "event_time": 10})
        with pytest.raises(InvalidEventError) as error:
            producer.send({"user_id": 1, "item_id": 2, "rating": 9, "event_time": 10})
        assert error.value.reason is Reason.RATING_OUT_OF_RANGE
        ahead = int(time.time()) + local_stack.events.max_ahead_s + 100
        for event in (Event(1, 2, 4.5, ahead), {"user_id": 1, "item_id": 2, "rating": 4.5,
                                                 "event_time": ahead}):  # fmt: skip
            with pytest.raises(InvalidEventError) as error:
                producer.send(event)
            assert error.value.reason is Reason.EVENT_TIME_AHEAD
        huge = {"user_id": 1, "item_id": 2, "rating": 10**400, "event_time": 10}
        with pytest.raises(InvalidEventError):
            producer.send(huge)
        assert producer.sent == 1
    [(*_, key, value)] = read_topic(local_stack, unique)
    assert key == b"1"
    assert event_from_json(value, local_stack.events) == Event(1, 2, 4.5, 10)


@pytest.mark.integration
def test_produce_command(
    local_stack: Settings, unique: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streaming.cli import main

    data = tmp_path / "u.data"
    data.write_text("1\t10\t5\t100\n2\t20\t3\t50\n3\t30\t5\t99999999999\n")
    flags = ["--set", f"kafka.bootstrap_servers={local_stack.kafka.bootstrap_servers}"]
    assert main([*flags, "produce", str(data), "--format", "udata", "--topic", unique]) == 0
    out = capsys.readouterr().out
    assert "sent 2 events" in out
    assert "1 events timed more than events.max_ahead_s" in out
    assert len(read_topic(local_stack, unique)) == 2
    assert main([*flags, "produce", str(data), "--rate", "-1"]) == 2
