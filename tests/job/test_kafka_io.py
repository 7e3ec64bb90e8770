"""The pinned apache-flink and flink-sql-connector-kafka work together against our broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from pyflink.common import Types, WatermarkStrategy
from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer

from streaming.config import FlinkSettings, Settings
from streaming.job.environment import execution_environment
from streaming.job.kafka_io import text_sink, text_source
from tests.kafka_records import read_topic

pytestmark = pytest.mark.integration


def _double(value: str) -> str:
    record = json.loads(value)
    return json.dumps({"seq": record["seq"], "doubled": record["seq"] * 2})


def test_flink_job_reads_and_writes_kafka(
    local_stack: Settings, unique: str, tmp_path: Path
) -> None:
    source_topic, sink_topic = f"{unique}-in", f"{unique}-out"
    admin = KafkaAdminClient(bootstrap_servers=local_stack.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(t, 2, 1) for t in (source_topic, sink_topic)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=local_stack.kafka.bootstrap_servers)
    for seq in range(1000):
        producer.send(
            source_topic, key=str(seq % 10).encode(), value=json.dumps({"seq": seq}).encode()
        )
    producer.flush()
    producer.close()

    flink = FlinkSettings(parallelism=2, checkpoint_dir=tmp_path / "checkpoints")
    settings = local_stack.model_copy(update={"flink": flink})
    env = execution_environment(settings)
    source = text_source(
        settings,
        source_topic,
        unique,
        KafkaOffsetsInitializer.earliest(),
        KafkaOffsetsInitializer.latest(),
    )
    (
        env.from_source(source, WatermarkStrategy.no_watermarks(), "ratings")
        .map(_double, output_type=Types.STRING())
        .sink_to(text_sink(settings, sink_topic))
    )
    env.execute("kafka round trip")  # bounded: returns when the source reaches `latest`

    out = sorted(
        (record["seq"], record["doubled"])
        for record in (json.loads(value) for *_, value in read_topic(settings, sink_topic))
    )
    assert out == [(seq, 2 * seq) for seq in range(1000)]
