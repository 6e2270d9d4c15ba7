"""Tables off a terminal are tab-separated and whole (no column cut at 80 characters); `-o wide` keeps the
columns a plain table leaves out."""

from __future__ import annotations

import pytest

from aslora_cli.output import TSV_TITLE_PREFIX, OutputFormat, narrow, print_table

LONG_REASON = "the task would take this silo's epsilon past its own budget " * 3
COLUMNS = ("silo", "records", "sigma", "declined")
ROWS = [["hospital-a", 1200, 0.8123456, LONG_REASON], ["hospital-b", 800, None, ""]]


def test_a_piped_table_is_tab_separated_and_whole(capsys: pytest.CaptureFixture[str]) -> None:
    print_table("silos", COLUMNS, ROWS)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == TSV_TITLE_PREFIX + "silos"
    assert lines[1].split("\t") == list(COLUMNS)
    assert lines[2].split("\t") == ["hospital-a", "1200", "0.8123", LONG_REASON.strip()]
    assert lines[3].split("\t") == ["hospital-b", "800", "-", ""]


def test_wide_keeps_every_column_and_table_leaves_the_wide_ones_out() -> None:
    assert narrow(COLUMNS, ROWS, ("sigma",), OutputFormat.WIDE) == (list(COLUMNS), ROWS)
    columns, rows = narrow(COLUMNS, ROWS, ("sigma",), OutputFormat.TABLE)
    assert columns == ["silo", "records", "declined"]
    assert rows[1] == ["hospital-b", 800, ""]
