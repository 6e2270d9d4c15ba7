"""Install Debian's `prometheus` package (a real Prometheus server) for the metrics end-to-end test.

The test runs it when the binary is missing (tests/observability/prometheus.py). It does nothing when a
`prometheus` binary is already on the PATH; it installs (deploy/debian_packages.py) only when running as
root on a machine with apt-get, and otherwise only says why it did not (the test then skips, unless
ASLORA_REQUIRE_PROMETHEUS=1 turns the skip into a failure, as .ci/run does).

Usage: ``python -m deploy.install_prometheus``; exit status 0 unless an install was tried and failed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from deploy.debian_packages import apt_install, can_install

PACKAGE = "prometheus"
BINARY = "prometheus"


def prometheus_binary() -> str | None:
    """The path of an installed prometheus server, or None."""
    return shutil.which(BINARY)


def install() -> None:
    """apt-get install the package, starting no service."""
    apt_install([PACKAGE])


def main() -> int:
    """Install when missing and possible; 1 when an install was tried and failed."""
    found = prometheus_binary()
    if found is not None:
        print(f"prometheus: found {found}")
        return 0
    if not can_install():
        print("prometheus: not installed, and not root with apt-get: the end-to-end metrics test will skip")
        return 0
    try:
        install()
    except subprocess.CalledProcessError as error:
        print(f"prometheus: apt-get failed ({error})", file=sys.stderr)
        return 1
    print(f"prometheus: installed {prometheus_binary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
