"""A short, real federation in this process for the metrics tests: a coordinator and two silo agents
talking gRPC on loopback, each serving its own Prometheus registry on a port the system chose.

The silos' metric endpoints outlive their agents' `run` (as in a real deployment, where a silo keeps
serving), so that a scrape after the run sees the final figures; `ShortRun.close` stops everything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from aslora_cli.federation_files import toml_text
from aslora_coordinator.service import CoordinatorService
from aslora_rpc.messages import RunEnd, RunState
from aslora_rpc.settings_file import TomlValue
from aslora_silo.agent import SiloAgent
from aslora_silo.config import load_silo_config
from tests.grpc.helpers import (
    coordinator_tables,
    load_config,
    silo_privacy_table,
    write_tsv,
)

ROUNDS = 3
LOCAL_STEPS = 2
SHARD_SIZES = (24, 40)
SILO_NAMES = tuple(f"silo-{index:02d}" for index in range(len(SHARD_SIZES)))
RUN_TIMEOUT_SECONDS = 180.0
LOOPBACK_ANY_PORT = "127.0.0.1:0"


@dataclass
class ShortRun:
    """A finished run whose coordinator and silos still serve their metrics."""

    service: CoordinatorService
    agents: list[SiloAgent]
    ends: dict[str, RunEnd] = field(default_factory=dict)

    @property
    def coordinator_target(self) -> str:
        """host:port of the coordinator's metrics endpoint."""
        endpoint = self.service.metrics_endpoint
        assert endpoint is not None
        return endpoint.endpoint.target

    @property
    def silo_targets(self) -> dict[str, str]:
        """host:port of each silo's metrics endpoint, by silo name."""
        targets = {}
        for agent in self.agents:
            assert agent.metrics_endpoint is not None
            targets[agent.config.name] = agent.metrics_endpoint.endpoint.target
        return targets

    def close(self) -> None:
        """Stop the coordinator and every silo's metrics endpoint."""
        self.service.shutdown()
        for agent in self.agents:
            agent.close()


def run_short_federation(model_dir: Path, work: Path) -> ShortRun:
    """Run ROUNDS rounds with both silos to the end; the caller must `close` the result."""
    tables = coordinator_tables(model_dir, rounds=ROUNDS, min_silos=len(SHARD_SIZES))
    tables["server"] = {
        "listen": LOOPBACK_ANY_PORT,
        "max_wait_seconds": 1,
        "port_file": str(work / "ports.json"),
    }
    tables["metrics"] = {"listen": LOOPBACK_ANY_PORT}
    tables["training"] = {"local_steps": LOCAL_STEPS, "batch_size": 8, "lr": 0.5}
    service = CoordinatorService(
        load_config(work / "coordinator.toml", tables), work / "coordinator", insecure=True
    )
    run = ShortRun(service=service, agents=[])
    try:
        for index, (name, size) in enumerate(zip(SILO_NAMES, SHARD_SIZES, strict=True)):
            silo: dict[str, dict[str, TomlValue]] = {
                "": {"model_path": str(model_dir)},
                "silo": {"name": name},
                "coordinator": {"address": service.server.endpoint.target},
                "data": {"train_path": str(write_tsv(work / f"{name}.tsv", size, 1000 * index))},
                "training": {"physical_batch_size": 8, "max_length": 16},
                "privacy": silo_privacy_table(),
                "health": {"listen": LOOPBACK_ANY_PORT},
                "metrics": {"listen": LOOPBACK_ANY_PORT},
                "connection": {"wait_seconds": 1, "give_up_after_seconds": 60},
            }
            (work / f"{name}.toml").write_text(toml_text(silo))
            run.agents.append(SiloAgent(load_silo_config(work / f"{name}.toml"), work / name, insecure=True))
        threads = [
            threading.Thread(target=_run_agent, args=(agent, run.ends), name=agent.config.name)
            for agent in run.agents
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(RUN_TIMEOUT_SECONDS)
        assert not any(thread.is_alive() for thread in threads), "a silo did not finish in time"
        assert service.orchestrator.wait_ended(RUN_TIMEOUT_SECONDS)
        assert service.orchestrator.state is RunState.FINISHED, service.orchestrator.reason
        assert sorted(run.ends) == sorted(SILO_NAMES), "a silo agent failed"
    except BaseException:
        run.close()
        raise
    return run


def _run_agent(agent: SiloAgent, ends: dict[str, RunEnd]) -> None:
    end = agent.run(max_runs=1)
    assert end is not None
    ends[agent.config.name] = end
