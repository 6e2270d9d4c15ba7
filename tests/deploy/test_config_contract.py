"""The config files the chart renders from each example are accepted by the processes that read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslora_coordinator.config_loader import load_coordinator_config
from aslora_silo.config import load_silo_config
from tests.deploy.helpers import EXAMPLES, Render, example_values, only


def _rendered_config(render: Render, example: str, folder: Path) -> Path:
    data: dict[str, str] = only(render(example_values(example)), "ConfigMap")["data"]
    ((name, text),) = data.items()
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_examples_rendered_config_loads(render: Render, example: str, tmp_path: Path) -> None:
    path = _rendered_config(render, example, tmp_path)
    if path.name == "coordinator.toml":
        config = load_coordinator_config(path)
        assert config.service.server.listen.port == 7443
        assert config.service.server.tls is not None
        if example == "coordinator-service":
            assert config.run is None, "a long-lived service: runs are submitted"
        else:
            assert config.run is not None and config.run.lora.alpha == 16
    else:
        silo = load_silo_config(path)
        assert silo.connection.coordinator.port == 7443
        assert silo.connection.tls is not None
        assert silo.privacy.max_epsilon > 0
        assert not silo.privacy.test_mode and not silo.privacy.allow_non_private
    assert path.exists()
