"""Installing Debian packages for the tests that need a real outside program (Prometheus, a browser).

`apt_install` installs with `apt-get install --no-install-recommends` (after `apt-get update` when the
first try fails), only as root on a machine with apt-get. A package's maintainer scripts may start a
system-wide service; a `policy-rc.d` that forbids starting services is put in place for the install when
the machine has none, so that the only such program ever running is a test's own, stopped at its end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

POLICY_RC = Path("/usr/sbin/policy-rc.d")
POLICY_RC_DENY_ALL = "#!/bin/sh\n# Temporary (deploy/debian_packages.py): start no service.\nexit 101\n"
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
UPDATE_COMMAND = ["apt-get", "update"]


def can_install() -> bool:
    """Whether this process may install Debian packages (root, with apt-get present)."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: Sequence[str]) -> None:
    """apt-get install `packages`, starting no service; CalledProcessError when it fails."""
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    temporary_policy = not POLICY_RC.exists()
    if temporary_policy:
        POLICY_RC.write_text(POLICY_RC_DENY_ALL)
        POLICY_RC.chmod(0o755)
    try:
        if subprocess.run(command, env=APT_ENV, stdin=subprocess.DEVNULL, check=False).returncode != 0:
            subprocess.run(UPDATE_COMMAND, env=APT_ENV, stdin=subprocess.DEVNULL, check=True)
            subprocess.run(command, env=APT_ENV, stdin=subprocess.DEVNULL, check=True)
    finally:
        if temporary_policy:
            POLICY_RC.unlink(missing_ok=True)
