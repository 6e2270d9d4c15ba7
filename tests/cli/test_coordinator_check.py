"""`aslora coordinator check` reads the config, fingerprints the model, reads the evaluation data against
the labels, checks the TLS files and the ports, and starts nothing: one line per check, exit 2 on a
failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from aslora_cli.federation_files import toml_text
from aslora_rpc.local_pki import create_local_pki, tls_table
from tests.grpc.helpers import coordinator_tables, write_tsv

CHECK_FAILED_EXIT_CODE = 2
RUN_TIMEOUT_SECONDS = 120.0
EVAL_RECORDS = 6


def _check(
    tables: dict[str, dict[str, Any]], folder: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    config = folder / "coordinator.toml"
    config.write_text(toml_text(tables))
    return subprocess.run(
        [sys.executable, "-m", "aslora_cli", "coordinator", "check", "--config", str(config), *options],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def test_a_sound_config_passes_every_check(tiny_model_dir: Path, tmp_path: Path) -> None:
    tables = coordinator_tables(tiny_model_dir)
    tables["evaluation"] = {"data_path": "eval.tsv"}  # beside the config file
    write_tsv(tmp_path / "eval.tsv", EVAL_RECORDS)
    outcome = _check(tables, tmp_path, "--insecure")
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    lines = outcome.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["run", "model", "evaluation", "tls", "ports"]
    assert f"{EVAL_RECORDS} records of {tmp_path / 'eval.tsv'}, every row read against the labels" in lines[2]


def test_a_silo_certificate_in_the_coordinators_tls_table_fails(tiny_model_dir: Path, tmp_path: Path) -> None:
    pki = create_local_pki(tmp_path / "pki", ["silo-a"])
    tables = coordinator_tables(tiny_model_dir)
    tables["tls"] = tls_table(pki.silos["silo-a"])
    outcome = _check(tables, tmp_path)
    assert outcome.returncode == CHECK_FAILED_EXIT_CODE, outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert "is a silo certificate, not a coordinator one" in outcome.stdout
    assert "fix: issue the files again" in outcome.stdout
