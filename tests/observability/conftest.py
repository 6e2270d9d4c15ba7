"""Fixtures of the observability tests: one short real federation per session, shared by its tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.observability.federation import ShortRun, run_short_federation


@pytest.fixture(scope="session")
def short_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShortRun]:
    """A finished three-round, two-silo run whose processes' metric endpoints still serve."""
    run = run_short_federation(tiny_model_dir, tmp_path_factory.mktemp("observed-run"))
    yield run
    run.close()
