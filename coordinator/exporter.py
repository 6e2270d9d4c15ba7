"""Export of the current global adapter: a PEFT adapter directory, or the plain adapter-state file."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aslora_coordinator.export_format import ADAPTER_STATE_FILE, ExportFormat
from aslora_coordinator.global_model import GlobalModel
from aslora_core.factors import AdapterState
from aslora_core.serialization import state_to_bytes
from aslora_rpc.transfer import PayloadInfo, describe_file, write_payload


@dataclass(frozen=True)
class ExportedFile:
    """One file of an export, on the coordinator's disk."""

    name: str
    path: Path
    info: PayloadInfo


@contextmanager
def exported_files(
    state: AdapterState,
    model: Callable[[], GlobalModel],
    spool_dir: Path,
    export_format: ExportFormat,
) -> Iterator[list[ExportedFile]]:
    """The files of the adapter `state` in `export_format` (the PEFT form written by `model()`), deleted
    when the context closes."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spool_dir, prefix="export-") as folder:
        out = Path(folder)
        if export_format is ExportFormat.PEFT:
            paths = model().export_peft(state, out)
        else:
            spooled = write_payload(state_to_bytes(state), out, "state-")
            paths = [spooled.path.rename(out / ADAPTER_STATE_FILE)]
        yield [ExportedFile(path.name, path, describe_file(path)) for path in paths]
