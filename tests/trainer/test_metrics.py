"""The trainer's metrics endpoint: a taken port is a clear error, before any work starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streaming.config import load_settings
from streaming.errors import RuntimeServiceError
from streaming.trainer import Trainer


def test_a_taken_metrics_port_names_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = load_settings(
            overrides={"trainer": {"state_dir": str(tmp_path), "metrics_port": port}}
        )
        with pytest.raises(RuntimeServiceError, match=r"trainer\.metrics_port"):
            Trainer(settings, report=lambda _: None).run()
