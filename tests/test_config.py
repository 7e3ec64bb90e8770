from pathlib import Path

import pytest
from pydantic import BaseModel

from streaming.cli import main
from streaming.config import Settings, load_settings, parse_assignments
from streaming.errors import ConfigError
from streaming.settings_reference import DEFAULT_PATH, render


def test_defaults_run_the_local_stack_on_loopback() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:29092"
    assert settings.redis.host_port == ("127.0.0.1", 26379)
    assert settings.flink.parallelism == 1
    assert settings.runtime.state_dir == settings.runtime.home / "state"
    assert settings.checkpoint_dir == settings.runtime.home / "checkpoints"


def test_paths_follow_home_unless_set(tmp_path: Path) -> None:
    settings = load_settings(overrides={"runtime": {"home": str(tmp_path)}})
    assert settings.runtime.jars_dir == tmp_path / "jars"
    assert settings.runtime.redis_server == tmp_path / "redis" / "bin" / "redis-server"
    moved = load_settings(overrides={"runtime": {"home": str(tmp_path), "jars_dir": "/opt/jars"}})
    assert moved.runtime.jars_dir == Path("/opt/jars")
    assert moved.runtime.state_dir == tmp_path / "state"


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "walkstream.toml"
    config.write_text(
        '[flink]\nparallelism = 3\nstate_backend = "rocksdb"\n'
        '[kafka]\nbootstrap_servers = "file:1"\n[kafka.topics]\nratings = "from-file"\n'
    )
    monkeypatch.setenv("WALKSTREAM_FLINK__PARALLELISM", "5")
    monkeypatch.setenv("WALKSTREAM_KAFKA__BOOTSTRAP_SERVERS", "env:2")
    settings = load_settings(config, parse_assignments(["kafka.bootstrap_servers=flag:3"]))
    assert settings.kafka.bootstrap_servers == "flag:3"
    assert settings.flink.parallelism == 5
    assert settings.flink.state_backend == "rocksdb"
    assert settings.kafka.topics.ratings == "from-file"
    assert settings.kafka.topics.samples == "samples"


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[redis]\nkey_prefix = "team-a"\n')
    monkeypatch.setenv("WALKSTREAM_CONFIG", str(config))
    assert load_settings().redis.key_prefix == "team-a"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"flink": {"parallelism": "0"}}, "flink.parallelism"),
        ({"flink": {"parallelism": "two"}}, "flink.parallelism"),
        ({"flink": {"state_backend": "memory"}}, "flink.state_backend"),
        ({"kafka": {"bootstrap_servers": "localhost"}}, "kafka.bootstrap_servers"),
        ({"kafka": {"bootstrap_servers": "localhost:70000"}}, "kafka.bootstrap_servers"),
        ({"kafka": {"bootstrap_servers": " , "}}, "kafka.bootstrap_servers"),
        ({"kafka": {"topics": {"ratings": "has space"}}}, "kafka.topics.ratings"),
        ({"kafka": {"topics": {"samples": "x" * 250}}}, "kafka.topics.samples"),
        ({"redis": {"url": "http://127.0.0.1:6379"}}, "redis.url"),
        ({"redis": {"url": "redis://:secret@127.0.0.1:6379"}}, "redis.url"),
        ({"redis": {"url": "redis://127.0.0.1:99999/0"}}, "redis.url"),
        ({"redis": {"username": "app"}}, "redis"),
        ({"redis": {"key_prefix": "a*"}}, "redis.key_prefix"),
        ({"runtime": {"kafka_controller_port": "0"}}, "runtime.kafka_controller_port"),
        ({"runtime": {"kafka_heap": "lots"}}, "runtime.kafka_heap"),
        ({"flink": {"checkpoint_interval_ms": "5"}}, "flink.checkpoint_interval_ms"),
        ({"kafka": {"brokers": "x:1"}}, "kafka.brokers"),
        ({"stream": {"user_sequence_length": "20"}}, "stream.user_sequence_length"),  # removed
        ({"stream": {"refresh_interval_s": "0"}}, "stream.refresh_interval_s"),
    ],
)
def test_invalid_values_fail_naming_the_setting(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(overrides=overrides)
    assert f"  {named}:" in str(error.value)
    env_name = "WALKSTREAM_" + named.upper().replace(".", "__")
    assert env_name in str(error.value)


def test_environment_errors_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALKSTREAM_FLINK__PARALLELISM", "-1")
    with pytest.raises(ConfigError, match=r"flink\.parallelism: .*greater than or equal to 1"):
        load_settings()


def test_bad_config_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[flink\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


def test_assignments_nest_and_reject_malformed() -> None:
    assert parse_assignments(["a.b.c=1", "a.b.d=x=y", "e=2"]) == {
        "a": {"b": {"c": "1", "d": "x=y"}},
        "e": "2",
    }
    with pytest.raises(ConfigError, match=r"SECTION\.FIELD=VALUE"):
        parse_assignments(["flink.parallelism"])
    with pytest.raises(ConfigError, match="is a value"):
        parse_assignments(["a=1", "a.b=2"])


def test_secrets_are_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--set", "redis.username=app", "--set", "redis.password=hunter2"]
    assert main([*args, "config"]) == 0
    assert main([*args, "--set", "redis.url=nope", "config"]) == 2
    captured = capsys.readouterr()
    assert "hunter2" not in captured.out + captured.err
    assert '"username": "app"' in captured.out
    assert "redis.url" in captured.err


def test_cli_reports_bad_settings_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--set", "flink.parallelism=0", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("walkstream status: error: invalid settings:")
    assert "flink.parallelism" in err
    assert "Traceback" not in err


def _setting_names(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names += _setting_names(field.annotation, f"{prefix}{name}.")
        else:
            names.append(prefix + name)
    return names


def test_the_committed_settings_reference_is_what_the_model_generates() -> None:
    """docs/configuration.md is generated from the fields' descriptions: regenerate it with
    `python -m streaming.settings_reference` after changing a setting."""
    assert DEFAULT_PATH.read_text() == render(), (
        "docs/configuration.md is stale: run python -m streaming.settings_reference"
    )


def test_the_settings_reference_documents_every_setting() -> None:
    page = render()
    missing = [name for name in _setting_names(Settings) if f"| `{name}` |" not in page]
    assert missing == []
