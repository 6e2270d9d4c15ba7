"""Install Debian's `chromium` and `chromium-driver` packages (a real browser and its WebDriver) for the
dashboard's browser test.

The test runs it when either binary is missing (tests/dashboard/browser.py). It does nothing when both
are already installed; it installs (deploy/debian_packages.py) only when running as root on a machine with
apt-get, and otherwise only says why it did not (the test then skips, unless ASLORA_REQUIRE_BROWSER=1
turns the skip into a failure, as .ci/run does).

Usage: ``python -m deploy.install_browser``; exit status 0 unless an install was tried and failed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

from deploy.debian_packages import apt_install, can_install

PACKAGES = ("chromium", "chromium-driver")
BROWSER_BINARY = "chromium"
DRIVER_BINARY = "chromedriver"


@dataclass(frozen=True)
class Browser:
    """The installed browser and the WebDriver that drives it."""

    browser: str
    driver: str


def installed_browser() -> Browser | None:
    """The installed chromium and chromedriver, or None when either is missing."""
    browser, driver = shutil.which(BROWSER_BINARY), shutil.which(DRIVER_BINARY)
    return None if browser is None or driver is None else Browser(browser, driver)


def install() -> None:
    """apt-get install both packages, starting no service."""
    apt_install(PACKAGES)


def main() -> int:
    """Install when missing and possible; 1 when an install was tried and failed."""
    found = installed_browser()
    if found is not None:
        print(f"browser: found {found.browser} and {found.driver}")
        return 0
    if not can_install():
        print("browser: not installed, and not root with apt-get: the dashboard's browser test will skip")
        return 0
    try:
        install()
    except subprocess.CalledProcessError as error:
        print(f"browser: apt-get failed ({error})", file=sys.stderr)
        return 1
    print(f"browser: installed {installed_browser()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
