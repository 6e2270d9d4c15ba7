"""Export of the current global adapter: a PEFT adapter directory, or the plain adapter-state file; both
with the run's model card."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aslora_coordinator.export_format import ADAPTER_STATE_FILE, ExportFormat
from aslora_coordinator.global_model import GlobalModel
from aslora_coordinator.model_card import MODEL_CARD_FILE, ModelCardFacts
from aslora_coordinator.observation import RunObservation
from aslora_core.factors import AdapterState
from aslora_core.serialization import state_to_bytes
from aslora_rpc.messages import RunPlan
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
    card: str,
    spool_dir: Path,
    export_format: ExportFormat,
) -> Iterator[list[ExportedFile]]:
    """The files of the adapter `state` in `export_format` (the PEFT form written by `model()`) and its
    model card, deleted when the context closes."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spool_dir, prefix="export-") as folder:
        out = Path(folder)
        if export_format is ExportFormat.PEFT:
            paths = model().export_peft(state, out)
        else:
            spooled = write_payload(state_to_bytes(state), out, "state-")
            paths = [spooled.path.rename(out / ADAPTER_STATE_FILE)]
        # Written over peft's blank template, which save_pretrained leaves in a PEFT export.
        (out / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
        paths = sorted({*paths, out / MODEL_CARD_FILE})
        yield [ExportedFile(path.name, path, describe_file(path)) for path in paths]


def card_facts(plan: RunPlan, observed: RunObservation) -> ModelCardFacts:
    """The model card's facts about the run as it stands."""
    return ModelCardFacts(
        run_id=plan.run_id,
        policy=plan.federation.policy,
        task=plan.task.value,
        labels=plan.label_names,
        rounds_completed=observed.rounds_completed,
        rounds_total=plan.federation.rounds,
        epsilon_by_silo={entry.silo_id: entry.epsilon_recomputed for entry in observed.ledger},
        delta=plan.privacy.delta,
        accountant=plan.privacy.accountant.value,
        base_model_fingerprint=plan.base_model_fingerprint,
        lora_rank=plan.lora.rank,
        lora_alpha=plan.lora.alpha,
    )
