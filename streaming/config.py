"""All of walkstream's settings, in one typed and validated place.

Precedence, highest first: CLI flags (``--set section.field=value`` and per-command flags),
``WALKSTREAM_<SECTION>__<FIELD>`` environment variables, a TOML config file (``--config`` or
``WALKSTREAM_CONFIG``), then defaults that run the local stack on loopback.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic import model_validator as _model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streaming.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "EventSettings",
    "FlinkSettings",
    "KafkaSettings",
    "RedisSettings",
    "RuntimeSettings",
    "Settings",
    "StreamSettings",
    "TopicSettings",
    "TrainingSettings",
    "UserSettings",
    "WalkSettings",
    "load_settings",
    "parse_assignments",
]

ENV_PREFIX = "WALKSTREAM_"
_ENV_DELIMITER = "__"
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _default_home() -> Path:
    """The git-ignored `.walkstream/` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[1] / ".walkstream"


def split_host_port(address: str) -> tuple[str, int]:
    match = _HOST_PORT.match(address.strip())
    if match is None:
        raise ValueError(f"expected HOST:PORT in {address!r}")
    port = int(match.group(2))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} in {address!r} is outside 1..65535")
    return match.group(1).strip("[]"), port


def _read_pem(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSettings(_Section):
    """Kafka topic names; every component reads them from here."""

    ratings: str = Field(
        "ratings", description="rating events from producers (JSON, key = user id)"
    )
    dead_letter: str = Field("ratings.dlq", description="malformed events, with the reason")
    late: str = Field("ratings.late", description="events later than the allowed lateness")
    samples: str = Field("samples", description="finished walks and user sequences for training")
    items: str = Field("items", description="first sighting of each item, with its neighbours")
    walk_hops: str = Field("walk.hops", description="walk tokens routed to the next item's task")
    counts: str = Field("transition.counts", description="transition-count updates (debug)")
    users: str = Field(
        "users", description="each user's recent kept items, whenever they change (key = user id)"
    )

    @field_validator("*")
    @classmethod
    def _valid_topic(cls, value: str) -> str:
        if not _TOPIC_NAME.match(value) or value in {".", ".."}:
            raise ValueError(
                "not a valid Kafka topic name "
                "(1-249 characters of letters, digits, '.', '_' and '-')"
            )
        return value


class KafkaSettings(_Section):
    """Where the Kafka cluster is and how every walkstream client connects to it: the job's
    sources and sinks, the producer, the trainer's consumers and the admin that creates topics
    all take these (streaming.kafka_clients translates them for each client library)."""

    bootstrap_servers: str = Field(
        "127.0.0.1:29092", description="comma-separated HOST:PORT list of Kafka brokers"
    )
    topics: TopicSettings = Field(default_factory=TopicSettings)
    partitions: int = Field(4, ge=1, description="partitions of the topics walkstream creates")
    replication_factor: int = Field(1, ge=1, description="replicas of the topics it creates")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients talk to the brokers: TLS (SSL), SASL, both, neither"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SASL_* protocols only)"
    )
    sasl_username: str | None = Field(
        None, min_length=1, description="SASL user (SASL_* protocols only)"
    )
    sasl_password: SecretStr | None = Field(
        None, description="password of the SASL user (never printed)"
    )
    ssl_cafile: Path | None = Field(
        None, description="PEM CA certificates that sign the brokers' (default: the system's)"
    )
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (chain), when brokers require client TLS auth"
    )
    ssl_keyfile: Path | None = Field(
        None, description="unencrypted PKCS#8 PEM private key of the client certificate"
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _valid_servers(cls, value: str) -> str:
        servers = [s for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("needs at least one HOST:PORT")
        for server in servers:
            split_host_port(server)
        return ",".join(s.strip() for s in servers)

    @field_validator("ssl_cafile", "ssl_certfile")
    @classmethod
    def _pem_certificates(cls, value: Path | None) -> Path | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in _read_pem(value):
            raise ValueError(f"{value} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        return value

    @field_validator("ssl_keyfile")
    @classmethod
    def _pkcs8_key(cls, value: Path | None) -> Path | None:
        # The Java client (the Flink job's) reads only PKCS#8; requiring it of every client
        # keeps one key file working for all of them.
        if value is None:
            return value
        text = _read_pem(value)
        if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text:
            raise ValueError(
                f"{value} is encrypted: walkstream reads unencrypted keys only; decrypt it with "
                "`openssl pkcs8 -in KEY -out KEY.pk8` and protect the file by its permissions"
            )
        if "-----BEGIN PRIVATE KEY-----" not in text:
            raise ValueError(
                f"{value} holds no PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----); convert it "
                "with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
            )
        return value

    @_model_validator(mode="after")
    def _consistent_security(self) -> KafkaSettings:
        """Each setting is used by the protocol chosen, or refused: a setting every client
        would silently ignore (a password sent nowhere, a CA no TLS checks) hides a mistake."""
        protocol = self.security_protocol
        sasl = {"sasl_mechanism": self.sasl_mechanism, "sasl_username": self.sasl_username,
                "sasl_password": self.sasl_password}  # fmt: skip
        tls = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile,
               "ssl_keyfile": self.ssl_keyfile}  # fmt: skip
        if protocol.startswith("SASL_"):
            missing = [f"kafka.{name}" for name, value in sasl.items() if value is None]
            if missing:
                raise ValueError(f"security_protocol {protocol} needs {', '.join(missing)}")
        elif unused := [f"kafka.{name}" for name, value in sasl.items() if value is not None]:
            raise ValueError(
                f"{', '.join(unused)} set, but security_protocol {protocol} does not use SASL: "
                "set security_protocol to SASL_SSL or SASL_PLAINTEXT, or remove them"
            )
        unused = [f"kafka.{name}" for name, value in tls.items() if value is not None]
        if unused and not protocol.endswith("SSL"):
            raise ValueError(
                f"{', '.join(unused)} set, but security_protocol {protocol} does not use TLS: "
                "set security_protocol to SSL or SASL_SSL, or remove them"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("a client certificate needs both kafka.ssl_certfile and ssl_keyfile")
        return self

    @property
    def first_server(self) -> tuple[str, int]:
        return split_host_port(self.bootstrap_servers.split(",")[0])


class RedisSettings(_Section):
    """Where Redis is and how every walkstream client connects to it (streaming.store.connect
    builds each connection from these)."""

    url: str = Field("redis://127.0.0.1:26379/0", description="redis:// or rediss:// URL")
    username: str | None = Field(None, description="ACL user (None: the default user)")
    password: SecretStr | None = Field(None, description="password of the ACL user")
    password_file: Path | None = Field(
        None,
        description="file holding the password, read when redis.password is unset; for a "
        "loopback url HOME/secrets/redis-password, which `walkstream up` generates",
    )
    key_prefix: str = Field("walkstream", description="prefix of every key walkstream writes")
    ssl_cafile: FilePath | None = Field(
        None, description="PEM CA certificates that sign the server's (default: the system's)"
    )
    ssl_certfile: FilePath | None = Field(
        None, description="PEM client certificate, when the server requires client TLS auth"
    )
    ssl_keyfile: FilePath | None = Field(
        None, description="unencrypted PEM private key of the client certificate"
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
            raise ValueError("expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB")
        if parts.password:
            raise ValueError(
                "put the password in redis.password (WALKSTREAM_REDIS__PASSWORD), not in the URL"
            )
        try:
            parts.port  # noqa: B018 - urlsplit validates the port lazily
        except ValueError as exc:
            raise ValueError(f"bad port in {value!r}: {exc}") from exc
        return value

    @field_validator("key_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not value or any(c.isspace() or c in "{}*?[]" for c in value):
            raise ValueError("must be non-empty, without spaces, braces or glob characters")
        return value

    @_model_validator(mode="after")
    def _user_needs_password(self) -> RedisSettings:
        if self.username and not self.password:
            raise ValueError("redis.username is set, so redis.password must be set too")
        return self

    @_model_validator(mode="after")
    def _tls_needs_rediss(self) -> RedisSettings:
        tls = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile,
               "ssl_keyfile": self.ssl_keyfile}  # fmt: skip
        unused = [f"redis.{name}" for name, value in tls.items() if value is not None]
        if unused and not self.url.startswith("rediss://"):
            raise ValueError(
                f"{', '.join(unused)} set, but redis.url is not rediss://: use rediss:// "
                "(TLS), or remove them"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("a client certificate needs both redis.ssl_certfile and ssl_keyfile")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 6379


class EventSettings(_Section):
    """What a valid rating event is, and which ratings count as positive behaviour."""

    min_rating: float = Field(0.0, description="lowest valid rating")
    max_rating: float = Field(5.0, description="highest valid rating")
    high_rating: float = Field(3.5, description="ratings >= this enter user sequences")
    max_event_time: int = Field(
        10**11, gt=0, description="latest valid event time in seconds (rejects milliseconds)"
    )
    max_record_bytes: int = Field(1024, ge=64, description="larger records are rejected")
    max_ahead_s: int = Field(
        86_400,
        ge=0,
        description="events timed more than this after the broker received them are rejected",
    )

    @_model_validator(mode="after")
    def _ordered(self) -> EventSettings:
        if not self.min_rating <= self.high_rating <= self.max_rating:
            raise ValueError("needs min_rating <= high_rating <= max_rating")
        return self


class WalkSettings(_Section):
    """DeepWalk / Node2vec sampling over the transition graph."""

    n_walks: int = Field(
        20_000,
        ge=0,
        description="walks per batch run and per full retrain of the trainer (reference: 20,000)",
    )
    length: int = Field(10, ge=2, description="items per walk (reference: 10)")
    p: float = Field(
        1.0,
        gt=0,
        description="Node2vec return parameter (1 = DeepWalk; routed walks refuse others)",
    )
    q: float = Field(
        1.0,
        gt=0,
        description="Node2vec in-out parameter (1 = DeepWalk; routed walks refuse others)",
    )
    half_life_s: float | None = Field(
        None,
        gt=0,
        description=(
            "event-time seconds after which a transition weighs half in walks and in batch "
            "cold-item averages (None: every transition weighs 1 forever; docs/forgetting.md)"
        ),
    )


class TrainingSettings(_Section):
    """Word2Vec over user sequences (Item2vec), walks (DeepWalk) or both; the defaults'
    rationale is docs/adr/0001-word2vec-defaults.md."""

    method: Literal["item2vec", "deepwalk", "both"] = Field(
        "both", description="training corpus: user sequences, walks, or both"
    )
    seed: int = Field(42, ge=0, description="seeds walks and Word2Vec; recorded with the model")
    vector_size: int = Field(64, ge=2, le=4096, description="embedding dimension")
    window: int = Field(50, ge=1, description="context window")
    sg: bool = Field(True, description="skip-gram (true) or CBOW (false)")
    hs: bool = Field(True, description="hierarchical softmax instead of negative sampling")
    negative: int = Field(0, ge=0, description="negative samples (0: none, with hs)")
    ns_exponent: float = Field(0.75, description="negative-sampling distribution exponent")
    sample: float = Field(1e-3, ge=0, description="down-sampling of frequent items")
    min_count: int = Field(1, ge=1, description="rarer items are not trained (they go cold)")
    epochs: int = Field(20, ge=1, description="passes over the corpus")
    alpha: float = Field(0.025, gt=0, description="initial learning rate")
    min_alpha: float = Field(0.0001, ge=0, description="final learning rate")
    workers: int = Field(0, ge=0, description="training threads (0: one per core)")
    smoothing: float = Field(
        0.5,
        ge=0,
        le=1,
        description="share of each published vector taken from its transition-graph "
        "neighbours' (0: off; docs/forgetting.md)",
    )

    @_model_validator(mode="after")
    def _has_objective(self) -> TrainingSettings:
        if not self.hs and self.negative == 0:
            raise ValueError("needs hs = true or negative > 0, or Word2Vec learns nothing")
        return self


class StreamSettings(_Section):
    """The streaming job's behaviour (start and stop positions are per run: CLI flags)."""

    group_id: str = Field("walkstream-job", description="Kafka consumer group of the job")
    out_of_orderness_s: int = Field(
        1, ge=0, description="how far behind the newest event time an event may arrive"
    )
    idle_timeout_s: int = Field(
        5, ge=1, description="a partition without events stops holding back the watermark"
    )
    behind_idle_timeout_s: int = Field(
        60,
        ge=1,
        description="the same for a partition whose last record was read behind the broker "
        "(catching up): its pause is a slow fetch more likely than the end of its records",
    )
    walks_per_weight: float = Field(
        1.0, ge=0, description="walks started at an item per new transition out of it"
    )
    refresh_walks_per_weight_hour: float = Field(
        0.0,
        ge=0,
        description="background walks started at an item per hour per unit of its weight",
    )
    refresh_interval_s: int = Field(
        60,
        ge=1,
        description="how often each shard of items starts its background walks and forgets "
        "its idle items",
    )
    item_idle_ttl_s: int = Field(
        0,
        ge=0,
        le=2_000_000_000,
        description="an item whose newest transition out of it is this much older (event "
        "time) than its shard's newest is forgotten: its out-edges leave the job's state and "
        "every walk task's (0: never)",
    )
    transition_samples: bool = Field(
        True,
        description="every transition is also a sample, so the trainer rebuilds each user's "
        "whole sequence (Item2vec) and the graph the batch pipeline would build",
    )
    item_neighbours: int = Field(
        5, ge=1, description="an item's first N neighbours are announced on the items topic"
    )
    emit_counts: bool = Field(
        False, description="write every transition-count update to the counts topic (debug)"
    )
    item_shards: int = Field(
        128,
        ge=1,
        le=32_768,
        description="per-item state is keyed by item id mod this (changing it needs a replay)",
    )
    item_cache_neighbours: int = Field(
        8_000_000,
        ge=0,
        description="per task: neighbour counts kept decoded between batches (~30 bytes each)",
    )
    batch_ms: int = Field(
        500,
        ge=10,
        le=60_000,
        description="transitions reach Python in batches this long (longer: fewer Python "
        "calls and more walk steps/s, each transition's walks later by up to this)",
    )
    walk_stage: Literal["replicated", "routed"] = Field(
        "replicated",
        description="replicated: every walk task holds every item's step table and steps "
        "walks to their end; routed: walks hop between the item stage's tasks through the "
        "feedback topic, for graphs too large for one task (docs/walks.md)",
    )
    walk_tasks: int = Field(
        0,
        ge=0,
        le=1024,
        description="replicated walks: how many walk tasks step them (0: one per Python "
        "interpreter that can run at once: flink.parallelism, but 1 in thread mode in the local "
        "mini-cluster, whose tasks all share one interpreter)",
    )
    hop_batch_ms: int = Field(
        0,
        ge=0,
        le=60_000,
        description="routed walks reaching a shard reach Python in batches this long (0: per "
        "message)",
    )

    @_model_validator(mode="after")
    def _behind_waits_longer(self) -> StreamSettings:
        if self.behind_idle_timeout_s < self.idle_timeout_s:
            raise ValueError("needs behind_idle_timeout_s >= idle_timeout_s")
        return self

    @_model_validator(mode="after")
    def _walk_stage_settings(self) -> StreamSettings:
        if self.hop_batch_ms and self.walk_stage != "routed":
            raise ValueError("hop_batch_ms batches routed walks' hops: needs walk_stage=routed")
        if self.walk_tasks and self.walk_stage != "replicated":
            raise ValueError(
                "walk_tasks sets how many tasks step replicated walks: needs "
                "walk_stage=replicated (routed walks are stepped by the item stage's tasks)"
            )
        return self


class FlinkSettings(_Section):
    parallelism: int = Field(1, ge=1, le=1024, description="default operator parallelism")
    state_backend: Literal["hashmap", "rocksdb"] = Field(
        "hashmap", description="keyed state on the JVM heap, or in RocksDB on local disk"
    )
    checkpoint_dir: Path | None = Field(None, description="default: RUNTIME_HOME/checkpoints")
    checkpoint_interval_ms: int = Field(10_000, ge=100, description="exactly-once checkpoints")
    python_execution_mode: Literal["thread", "process"] = Field(
        "thread",
        description="where the job's Python functions run: thread (inside the TaskManager's "
        "JVM, one interpreter for all its tasks) or process (a Python process per task slot)",
    )


class TrainerSettings(_Section):
    """The trainer: durable corpus, retraining cycles, drift gate, publishing."""

    group_id: str = Field("walkstream-trainer", description="Kafka consumer group (progress)")
    state_dir: Path | None = Field(None, description="corpus and checkpoints; default HOME/trainer")
    interval_s: float = Field(30.0, gt=0, description="at most this long between cycles")
    min_new_samples: int = Field(
        1_000,
        ge=1,
        description="a cycle needs this many new samples (or the interval; the first always)",
    )
    full_every: int = Field(
        10, ge=1, description="every Nth cycle retrains from scratch on the window"
    )
    settle_s: float = Field(
        20.0,
        ge=0,
        description="no new samples for this long: a full retrain of the window replaces a "
        "served version that is not one (0: never)",
    )
    window_samples: int = Field(
        500_000, ge=1, description="samples kept in the corpus (a full retrain holds them)"
    )
    segment_samples: int = Field(100_000, ge=1, description="samples per corpus segment file")
    replay_ratio: float = Field(
        2.0,
        ge=0,
        description="items replayed from the window's user sequences per item an incremental "
        "cycle trains on (new walks, new items in their context)",
    )
    walk_replay_ratio: float = Field(
        1.0,
        ge=0,
        description="older walks replayed per new walk in an incremental cycle of a window "
        "without transitions (a job with stream.transition_samples=false)",
    )
    held_out_every: int = Field(
        50, ge=2, description="every Nth sample is held out of training to check quality"
    )
    min_overlap: float = Field(
        0.2, ge=0, le=1, description="drift gate: top-10 neighbour overlap with current"
    )
    min_quality_ratio: float = Field(
        0.7, ge=0, description="drift gate: held-out HR@10 at least this times current's"
    )
    min_held_out: int = Field(
        200,
        ge=1,
        description="drift gate: held-out pairs needed to compare quality (fewer: it passes)",
    )
    grace_s: int = Field(3600, ge=1, description="old versions stay readable this long")
    preload_s: float = Field(
        2.0,
        ge=0,
        description="a written version is announced this long before it becomes current, "
        "so that preloading readers have its index loaded when it does",
    )
    metrics_port: int = Field(
        29100, ge=0, lt=65536, description="Prometheus metrics on 127.0.0.1 (0: off)"
    )


class UserSettings(_Section):
    """User vectors: each user's weighted average of their most recent kept items' directions."""

    enabled: bool = Field(
        True,
        description="the job writes users' recent items and the trainer publishes user vectors",
    )
    recent_items: int = Field(
        20, ge=1, le=1_000, description="a user's vector averages their last N kept items"
    )
    recency_decay: float = Field(
        0.7, gt=0, le=1, description="each older recent item weighs this times the one after it"
    )
    idle_ttl_s: int = Field(
        0,
        ge=0,
        le=2_000_000_000,
        description="users with no kept rating for this long (event time) are forgotten: the "
        "job drops their state (their next rating starts a new sequence), the trainer leaves "
        "them out of new versions (0: never)",
    )


class RuntimeSettings(_Section):
    """The local embedded stack (`walkstream up`) and where setup puts what it installs."""

    home: Path = Field(default_factory=_default_home, description="root of local data")
    state_dir: Path = Field(description="service data, logs, PIDs; default HOME/state")
    jars_dir: Path = Field(description="Maven-resolved jars; default HOME/jars")
    redis_server: Path = Field(description="redis-server; default HOME/redis/bin/redis-server")
    java: str = Field("java", description="java executable for the Kafka broker")
    kafka_controller_port: int = Field(29093, gt=0, lt=65536, description="KRaft controller")
    kafka_heap: str = Field("1g", pattern=r"^\d+[mMgG]$", description="broker JVM heap (-Xmx)")
    startup_timeout_s: float = Field(90.0, gt=0, description="how long `up` waits per service")

    @_model_validator(mode="before")
    @classmethod
    def _derive_paths(cls, data: Any) -> Any:
        """Paths left unset follow `home`, so moving `home` moves everything."""
        if not isinstance(data, dict):
            return data
        home = Path(data.get("home") or _default_home()).expanduser()
        derived = {
            "state_dir": home / "state",
            "jars_dir": home / "jars",
            "redis_server": home / "redis" / "bin" / "redis-server",
        }
        return {**data, "home": home} | {
            key: default for key, default in derived.items() if data.get(key) is None
        }


class Settings(BaseSettings):
    """Everything walkstream can be told; print with `walkstream config`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=_ENV_DELIMITER,
        frozen=True,
        extra="forbid",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    walks: WalkSettings = Field(default_factory=WalkSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    flink: FlinkSettings = Field(default_factory=FlinkSettings)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    users: UserSettings = Field(default_factory=UserSettings)
    runtime: RuntimeSettings = Field(default_factory=lambda: RuntimeSettings.model_validate({}))

    @property
    def checkpoint_dir(self) -> Path:
        return self.flink.checkpoint_dir or self.runtime.home / "checkpoints"

    @property
    def trainer_dir(self) -> Path:
        return self.trainer.state_dir or self.runtime.home / "trainer"

    @_model_validator(mode="before")
    @classmethod
    def _local_redis_password(cls, data: Any) -> Any:
        """A loopback Redis without redis.password or redis.password_file is the local stack's:
        its password is the one `walkstream up` generates under the runtime home. Decided here,
        once, so every client (streaming.store.connect) and the server agree on it."""
        if not isinstance(data, dict) or not isinstance(data.get("redis", {}), dict):
            return data
        redis: dict[str, Any] = data.get("redis", {})
        if redis.get("password") or redis.get("password_file"):
            return data
        url = redis.get("url") or RedisSettings.model_fields["url"].default
        if urlsplit(str(url)).hostname not in LOOPBACK_HOSTS:
            return data
        runtime = data.get("runtime", {})
        home = runtime.get("home") if isinstance(runtime, dict) else runtime.home
        secret = Path(home or _default_home()).expanduser() / "secrets" / "redis-password"
        return {**data, "redis": {**redis, "password_file": secret}}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = settings_cls.model_config.get("toml_file")
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if config_file:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=config_file),)
        return sources


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """Turn ``["kafka.topics.ratings=r2", ...]`` into a nested dict of overrides."""
    nested: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects SECTION.FIELD=VALUE, got {assignment!r}")
        *parents, leaf = key.strip().split(".")
        node = nested
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
            node = child
        node[leaf] = value
    return nested


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"])
        env = ENV_PREFIX + _ENV_DELIMITER.join(str(p) for p in item["loc"]).upper()
        got = item.get("input")
        shown = "" if isinstance(got, dict) or "password" in name else f" (got {got!r})"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {name}: {message}{shown}  [env {env}]")
    return "invalid settings:\n" + "\n".join(lines)


def load_settings(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Settings from flags (`overrides`), the environment, and a TOML file, in that order."""
    if config_file is None and os.environ.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(os.environ[ENV_PREFIX + "CONFIG"])
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        try:
            with config_file.open("rb") as handle:
                tomllib.load(handle)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # TOML is UTF-8 text
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        return _FromFile(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
