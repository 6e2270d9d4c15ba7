"""The silo's task journal and its single charge per task: a finished update is kept whole and found
again for the same task of the same run only; a task charged but not finished (the silo died while
training) is trained again from the pre-charge ledger, so that its ledger holds the task once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aslora_core.config import ComputeSettings
from aslora_core.factor_choice import FactorChoice
from aslora_core.privacy import PrivacyAccountant
from aslora_silo.config import LocalData, SiloPrivacy
from aslora_silo.ledger import LEDGER_FILE, SiloLedger
from aslora_silo.task_journal import JournalEntry, TaskJournal
from aslora_silo.workspace import Workspace
from tests.grpc.helpers import TEST_SILO_BUDGET, small_run_plan, write_tsv

STEPS = 2
SIGMA = 1.0


def _entry(task_id: str = "run-r0-a0") -> JournalEntry:
    return JournalEntry("run", task_id, 0, PrivacyAccountant().to_dict())


def test_a_finished_update_is_found_again_only_for_its_own_task(tmp_path: Path) -> None:
    journal = TaskJournal(tmp_path)
    assert journal.load() is None and journal.entry_for("run", "run-r0-a0") is None
    entry = _entry()
    journal.begin(entry)
    assert journal.entry_for("run", "run-r0-a0") == entry
    assert journal.finished_update(entry) is None, "charged, not finished"
    kept = journal.finish(entry, b"update bytes")
    finished = journal.entry_for("run", "run-r0-a0")
    assert finished is not None and finished.update_sha256 == kept.info.sha256.hex()
    again = TaskJournal(tmp_path).finished_update(finished)
    assert again is not None and again.path.read_bytes() == b"update bytes" and again.info == kept.info
    assert journal.entry_for("another-run", "run-r0-a0") is None
    assert journal.entry_for("run", "run-r0-a1") is None


def test_a_damaged_update_or_journal_is_not_sent(tmp_path: Path) -> None:
    journal = TaskJournal(tmp_path)
    entry = _entry()
    journal.begin(entry)
    kept = journal.finish(entry, b"update bytes")
    finished = journal.load()
    assert finished is not None
    kept.path.write_bytes(b"update bytez")
    assert journal.finished_update(finished) is None
    journal.path.write_text("{not json")
    assert journal.load() is None


def test_the_next_task_drops_the_previous_update(tmp_path: Path) -> None:
    journal = TaskJournal(tmp_path)
    journal.finish(_entry(), b"round 0")
    journal.begin(_entry("run-r1-a0"))
    assert not journal.update_path.exists()


PRIVACY = SiloPrivacy(max_epsilon=TEST_SILO_BUDGET, test_mode=True)


def _workspace(model_dir: Path, folder: Path) -> tuple[Workspace, SiloLedger]:
    ledger = SiloLedger(folder, PRIVACY)
    workspace = Workspace(
        silo_id="silo-a",
        model_path=model_dir,
        data=LocalData(train_path=write_tsv(folder / "train.tsv", 24)),
        compute=ComputeSettings(physical_batch_size=8, max_length=16),
        privacy=PRIVACY,
        plan=small_run_plan(rounds=3, local_steps=STEPS, test_mode=True),
        ledger=ledger,
        state_dir=folder,
    )
    return workspace, ledger


def _ledger_on_disk(folder: Path) -> dict[str, Any]:
    return PrivacyAccountant.load(folder / LEDGER_FILE, PRIVACY.accountant).to_dict()


def test_a_task_trained_again_after_a_crash_is_charged_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    workspace, ledger = _workspace(tiny_model_dir, tmp_path)
    before = ledger.snapshot()
    selection = dict.fromkeys(workspace.layer_names, FactorChoice.B)
    workspace.train(0, workspace.template, selection, SIGMA)
    charged_once = _ledger_on_disk(tmp_path)
    assert sum(e["steps"] for e in charged_once["events"]) == STEPS

    # A new process finds the charge on disk; training the same task again starts from `before`.
    restarted, restarted_ledger = _workspace(tiny_model_dir, tmp_path)
    assert restarted_ledger.snapshot().to_dict() == charged_once
    restarted_ledger.rewind(before)
    restarted.train(0, restarted.template, selection, SIGMA)
    assert _ledger_on_disk(tmp_path) == charged_once
    assert restarted_ledger.snapshot().to_dict() == charged_once

    # The next task is charged on top, as usual.
    restarted.train(1, restarted.template, selection, SIGMA)
    assert sum(e["steps"] for e in _ledger_on_disk(tmp_path)["events"]) == 2 * STEPS
