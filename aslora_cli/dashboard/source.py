"""The dashboard's data: what the admin service's queries say of the runs, and nothing else.

It holds an `AdminReader`, which has no callable of a method that changes the federation, so no request
to the dashboard can submit, cancel, pause, evict or shut down anything."""

from __future__ import annotations

from dataclasses import dataclass

from aslora_coordinator.admin_reader import AdminReader
from aslora_coordinator.views import RunHistoryView, RunView, StatusView


@dataclass(frozen=True)
class RunDetail:
    """One run as the page shows it: its status (with its silos) and its figures round by round."""

    status: StatusView
    history: RunHistoryView


class DashboardSource:
    """The runs and one run's detail, read through the admin service's queries."""

    def __init__(self, reader: AdminReader) -> None:
        self._reader = reader

    def runs(self) -> list[RunView]:
        """Every submitted run, in submission order."""
        return self._reader.runs()

    def run(self, run_id: str) -> RunDetail:
        """The run `run_id` (empty: the active or latest run)."""
        status = self._reader.status(run_id)
        return RunDetail(status=status, history=self._reader.history(status.run_id))
