"""Install Debian's `prometheus` package (a real Prometheus server) for the metrics end-to-end test.

Run by `make unit` before the test suite. It does nothing when a `prometheus` binary is already on the
PATH; it installs with `apt-get install --no-install-recommends prometheus` only when running as root on a
machine with apt-get, and otherwise only says why it did not (the test then skips, unless
ASLORA_REQUIRE_PROMETHEUS=1 turns the skip into a failure, as .ci/run does).

The package's maintainer scripts would start a system-wide Prometheus service; a `policy-rc.d` that
forbids starting services is put in place for the install when the machine has none, so that the only
Prometheus ever running is the test's own, on a loopback port, stopped at the test's end.

Usage: ``python deploy/install_prometheus.py``; exit status 0 unless an install was tried and failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = "prometheus"
BINARY = "prometheus"
POLICY_RC = Path("/usr/sbin/policy-rc.d")
POLICY_RC_DENY_ALL = "#!/bin/sh\n# Temporary (deploy/install_prometheus.py): start no service.\nexit 101\n"
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
INSTALL_COMMAND = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
UPDATE_COMMAND = ["apt-get", "update"]


def prometheus_binary() -> str | None:
    """The path of an installed prometheus server, or None."""
    return shutil.which(BINARY)


def can_install() -> bool:
    """Whether this process may install Debian packages (root, with apt-get present)."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install() -> None:
    """apt-get install the package (after `apt-get update` when the first try fails), starting no service."""
    temporary_policy = not POLICY_RC.exists()
    if temporary_policy:
        POLICY_RC.write_text(POLICY_RC_DENY_ALL)
        POLICY_RC.chmod(0o755)
    try:
        if (
            subprocess.run(INSTALL_COMMAND, env=APT_ENV, stdin=subprocess.DEVNULL, check=False).returncode
            != 0
        ):
            subprocess.run(UPDATE_COMMAND, env=APT_ENV, stdin=subprocess.DEVNULL, check=True)
            subprocess.run(INSTALL_COMMAND, env=APT_ENV, stdin=subprocess.DEVNULL, check=True)
    finally:
        if temporary_policy:
            POLICY_RC.unlink(missing_ok=True)


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
