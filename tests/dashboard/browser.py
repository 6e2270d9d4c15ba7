"""A real headless browser for the dashboard's test: Debian's chromium, driven through its chromedriver
by selenium, with a fresh profile in a temporary folder, closed by its owner.

The packages are installed by deploy/install_browser.py where they are missing and the test runs as
root; elsewhere the test skips, unless ASLORA_REQUIRE_BROWSER=1 (set by .ci/run) turns the skip into a
failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from deploy import install_browser
from deploy.debian_packages import can_install

REQUIRE_VARIABLE = "ASLORA_REQUIRE_BROWSER"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
)
"""A browser that reaches nothing but the page it is sent to."""
PAGE_LOAD_TIMEOUT_SECONDS = 30


def browser_binaries() -> install_browser.Browser:
    """chromium and chromedriver, installed first where possible; skip (or fail when required) without."""
    found = install_browser.installed_browser()
    if found is None and can_install():
        install_browser.install()
        found = install_browser.installed_browser()
    if found is None:
        reason = "no chromium and chromedriver, and not root with apt-get to install Debian's packages"
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{REQUIRE_VARIABLE}=1 but {reason}")
        pytest.skip(reason)
    return found


@contextmanager
def headless_chromium(binaries: install_browser.Browser, work: Path) -> Iterator[webdriver.Chrome]:
    """A headless chromium with a fresh profile under `work` (its driver's log there too), quit at the end."""
    options = webdriver.ChromeOptions()
    options.binary_location = binaries.browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={work / 'profile'}")
    service = Service(executable_path=binaries.driver, log_output=str(work / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_SECONDS)
        yield driver
    finally:
        driver.quit()
