"""The dashboard in a real browser, on a live run of two silo processes over mutual TLS: refused without
its token, it shows the run and both silos, and a new point on the accuracy chart once a round closes,
without a reload."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait
from typer.testing import CliRunner

from aslora_cli.main import app
from tests.dashboard.browser import browser_binaries, headless_chromium
from tests.federation.long_lived import SILO_NAMES, LongLivedFederation, run_tables
from tests.federation.processes import end, spawn
from tests.grpc.helpers import write_tsv

ROUNDS = 2
BIG_BUDGET = 100.0
REFRESH_SECONDS = 0.5
START_TIMEOUT_SECONDS = 60.0
PAGE_TIMEOUT_SECONDS = 120.0
HTTP_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.2
ADDRESS_LINE = re.compile(r"dashboard \(read-only[^)]*\): (http://\S+)")
FORBIDDEN = 403
METHOD_NOT_ALLOWED = 405
PNG_SIGNATURE = b"\x89PNG"
COORDINATOR_POINTS = """
const chart = document.getElementById("accuracy-chart");
const line = (chart.data || []).find((trace) => trace.name === "coordinator");
return line ? line.x.length : 0;
"""
"""How many points the accuracy chart's coordinator line holds, as plotly.js drew them."""
ROW_KEYS = "return [...document.querySelectorAll(arguments[0])].map((row) => row.dataset[arguments[1]]);"


def _page_address(log: Path, process: subprocess.Popen[bytes]) -> str:
    give_up = time.monotonic() + START_TIMEOUT_SECONDS
    while (found := ADDRESS_LINE.search(log.read_text() if log.exists() else "")) is None:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < give_up, f"no address printed:\n{log.read_text()}"
        time.sleep(POLL_SECONDS)
    return found.group(1)


def _status(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            code: int = response.status
            return code
    except urllib.error.HTTPError as error:
        return error.code


def _assert_refused_without_the_token(url: str, run_id: str) -> None:
    base, token = url.split("?token=")
    assert _status(base) == FORBIDDEN
    assert _status(f"{base}?token={'x' * len(token)}") == FORBIDDEN
    assert _status(f"{base}api/runs") == FORBIDDEN
    assert _status(f"{base}api/runs?token={token}", "POST") == METHOD_NOT_ALLOWED, "GET only"
    assert [run["run_id"] for run in _get_json(url, "api/runs")["runs"]] == [run_id]


def _get_json(url: str, path: str, **parameters: str) -> Any:
    base, token = url.split("?token=")
    query = urllib.parse.urlencode({"token": token, **parameters})
    with urllib.request.urlopen(f"{base}{path}?{query}", timeout=HTTP_TIMEOUT_SECONDS) as response:
        return json.loads(response.read())


def _operator(federation: LongLivedFederation, command: str) -> bool:
    """An operator command (pause, resume) over mutual TLS; whether it succeeded."""
    arguments = ["coordinator", command, *federation.operator_options()]
    return CliRunner().invoke(app, arguments).exit_code == 0


def _until(browser: webdriver.Chrome, condition: Callable[[webdriver.Chrome], object], what: str) -> None:
    WebDriverWait(browser, PAGE_TIMEOUT_SECONDS, POLL_SECONDS).until(condition, f"the page shows no {what}")


def _rows(browser: webdriver.Chrome, table: str, key: str) -> set[str]:
    """The keys of a table's rows, read in one script (the page replaces its rows at every refresh)."""
    keys: list[str] = browser.execute_script(ROW_KEYS, f"#{table} tbody tr", key)
    return set(keys)


def _points(browser: webdriver.Chrome) -> int:
    points: int = browser.execute_script(COORDINATOR_POINTS)
    return points


def test_the_page_follows_a_live_run_with_its_token_only(tiny_model_dir: Path, tmp_path: Path) -> None:
    binaries = browser_binaries()
    tables = run_tables(tiny_model_dir, tmp_path / "results.json", "aslora", rounds=ROUNDS, min_silos=2)
    evaluation_data = write_tsv(tmp_path / "eval.tsv", 16, 5000)
    tables["evaluation"] = {**tables["evaluation"], "data_path": str(evaluation_data), "max_length": 16}
    federation = LongLivedFederation(tmp_path, tiny_model_dir, tables, dict.fromkeys(SILO_NAMES, BIG_BUDGET))
    dashboard: subprocess.Popen[bytes] | None = None
    try:
        federation.start_coordinator()
        # Paused before its first round: the page is open before any round closes.
        federation.wait_for(lambda: _operator(federation, "pause"), "run to pause")
        federation.start_silos(dict.fromkeys(SILO_NAMES, 1))
        log = tmp_path / "dashboard.log"
        listen = ["--listen", "127.0.0.1:0", "--refresh-seconds", str(REFRESH_SECONDS)]
        dashboard = spawn(["coordinator", "dashboard", *listen, *federation.operator_options()], log)
        url = _page_address(log, dashboard)
        [run_id] = federation.runs()
        _assert_refused_without_the_token(url, run_id)
        with headless_chromium(binaries, tmp_path) as browser:
            browser.get(url)
            _until(browser, lambda b: run_id in _rows(b, "runs", "runId"), "run")
            _until(browser, lambda b: _rows(b, "silos", "siloId") == set(SILO_NAMES), "two silos")
            before = _points(browser)
            browser.execute_script("window.loadedOnce = true;")
            assert _operator(federation, "resume")
            _until(browser, lambda b: _points(b) > before, "new point on the accuracy chart")
            assert browser.execute_script("return window.loadedOnce === true;"), "the page was reloaded"
            assert run_id in browser.find_element(By.ID, "run-id").text
            screenshot = tmp_path / "dashboard.png"
            assert browser.save_screenshot(str(screenshot))
            assert screenshot.read_bytes().startswith(PNG_SIGNATURE)
        # Once the run has ended, its figures come from its last checkpoint: every round is there.
        federation.wait_for(lambda: federation.runs()[run_id]["state"] == "finished", "finished run")
        figures = _get_json(url, "api/run", run=run_id)["figures"]
        [coordinator] = [line for line in figures["accuracy"]["data"] if line["name"] == "coordinator"]
        assert list(coordinator["x"]) == list(range(ROUNDS + 1)), "the initial adapter, then each round"
        assert {line["name"] for line in figures["epsilon"]["data"]} == set(SILO_NAMES)
        dashboard.send_signal(signal.SIGTERM)
        assert dashboard.wait(STOP_TIMEOUT_SECONDS) == 0, log.read_text()
    finally:
        federation.close()
        if dashboard is not None:
            end([dashboard])
