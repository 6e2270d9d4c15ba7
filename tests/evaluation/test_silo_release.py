"""A silo's answer to an evaluation task: the plan, its config and its budget decide whether it releases;
a release is charged to the ledger on disk at the silo's floor or the plan's ask, whichever is larger."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from aslora_core.adapters import read_adapter
from aslora_core.config import ComputeSettings
from aslora_core.mechanism import Mechanism
from aslora_core.privacy import PrivacyAccountant
from aslora_rpc.messages import RunPlan, Task
from aslora_rpc.transfer import PayloadInfo
from aslora_silo.config import LocalData, SiloPrivacy
from aslora_silo.evaluation_release import EvaluationDeclinedError, SiloEvaluator, evaluation_refusal
from aslora_silo.ledger import LEDGER_FILE, SiloLedger
from aslora_silo.workspace import Workspace
from tests.grpc.helpers import small_run_plan, write_tsv

RECORDS = 40
EVAL_FRACTION = 0.3
ASKED = 4.0


def _plan(*, test_mode: bool = False, silo_evaluation: bool = True) -> RunPlan:
    plan = small_run_plan(rounds=2, local_steps=2, test_mode=test_mode)
    federation = replace(plan.federation, silo_evaluation=silo_evaluation, evaluation_noise_multiplier=ASKED)
    return replace(plan, federation=federation)


def _task(sigma: float = ASKED) -> Task:
    return Task("run-r0-eval", 0, {}, sigma, 1.0, 1, PayloadInfo(1, b"\0" * 32), 10.0, evaluate=True)


def _evaluator(model_dir: Path, folder: Path, privacy: SiloPrivacy, plan: RunPlan) -> SiloEvaluator:
    folder.mkdir(exist_ok=True)
    data = LocalData(train_path=write_tsv(folder / "train.tsv", RECORDS), eval_fraction=EVAL_FRACTION)
    ledger = SiloLedger(folder, privacy)
    workspace = Workspace(
        silo_id="silo-a",
        model_path=model_dir,
        data=data,
        compute=ComputeSettings(physical_batch_size=8, max_length=16),
        privacy=privacy,
        plan=plan,
        ledger=ledger,
        state_dir=folder,
    )
    return SiloEvaluator(workspace, data, privacy, ledger, folder)


def _on_disk(folder: Path) -> PrivacyAccountant:
    return PrivacyAccountant.load(folder / LEDGER_FILE, SiloPrivacy.accountant)


def test_a_release_is_charged_on_disk_at_the_larger_of_ask_and_floor(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    privacy = SiloPrivacy(max_epsilon=10.0, min_evaluation_noise_multiplier=6.0)
    evaluator = _evaluator(tiny_model_dir, tmp_path, privacy, _plan())
    assert evaluator.data is not None and 0 < len(evaluator.data) < RECORDS
    sums, sigma = evaluator.release(_task(), read_adapter(evaluator.workspace.model))
    assert sigma == 6.0
    assert [(e.noise_multiplier, e.mechanism) for e in _on_disk(tmp_path).history] == [
        (6.0, Mechanism.EVALUATION)
    ]
    second = replace(_task(8.0), round_index=1)
    assert sums != evaluator.release(second, read_adapter(evaluator.workspace.model))[0]
    assert [e.noise_multiplier for e in _on_disk(tmp_path).history] == [6.0, 8.0]


def test_one_release_per_round_the_plan_evaluates(tiny_model_dir: Path, tmp_path: Path) -> None:
    privacy = SiloPrivacy(max_epsilon=10.0)
    plan = _plan()
    plan = replace(plan, federation=replace(plan.federation, rounds=4, evaluation_interval=2))
    evaluator = _evaluator(tiny_model_dir, tmp_path, privacy, plan)
    state = read_adapter(evaluator.workspace.model)
    with pytest.raises(EvaluationDeclinedError, match="no adapter after round 0"):
        evaluator.release(_task(), state)
    evaluator.release(replace(_task(), round_index=1), state)
    with pytest.raises(EvaluationDeclinedError, match="released already"):
        evaluator.release(replace(_task(), round_index=1), state)
    assert len(_on_disk(tmp_path).history) == 1


def test_a_release_past_the_budget_is_declined_and_not_charged(tiny_model_dir: Path, tmp_path: Path) -> None:
    privacy = SiloPrivacy(max_epsilon=0.01, min_evaluation_noise_multiplier=1.0)
    evaluator = _evaluator(tiny_model_dir, tmp_path, privacy, _plan())
    with pytest.raises(EvaluationDeclinedError, match="past its own budget"):
        evaluator.release(_task(), read_adapter(evaluator.workspace.model))
    assert not (tmp_path / LEDGER_FILE).exists()


def test_a_release_without_noise_needs_the_silos_test_mode(tiny_model_dir: Path, tmp_path: Path) -> None:
    privacy = SiloPrivacy(max_epsilon=10.0, min_evaluation_noise_multiplier=0.0)
    evaluator = _evaluator(tiny_model_dir, tmp_path / "a", privacy, _plan(test_mode=True))
    with pytest.raises(EvaluationDeclinedError, match="test mode"):
        evaluator.release(_task(0.0), read_adapter(evaluator.workspace.model))
    testing = replace(privacy, test_mode=True)
    evaluator = _evaluator(tiny_model_dir, tmp_path / "b", testing, _plan(test_mode=True))
    state = read_adapter(evaluator.workspace.model)
    again = _evaluator(tiny_model_dir, tmp_path / "b", testing, _plan(test_mode=True))
    assert evaluator.release(_task(0.0), state)[0] == again.release(_task(0.0), state)[0]


def test_why_a_silo_releases_nothing(tmp_path: Path) -> None:
    data = LocalData(train_path=tmp_path / "t.tsv", eval_fraction=EVAL_FRACTION)
    privacy = SiloPrivacy(max_epsilon=1.0)
    assert evaluation_refusal(_plan(), data, privacy) is None
    assert "asks for no evaluation" in str(evaluation_refusal(_plan(silo_evaluation=False), data, privacy))
    declining = replace(privacy, release_evaluation=False)
    assert "release_evaluation = false" in str(evaluation_refusal(_plan(), data, declining))
    assert "no evaluation records" in str(
        evaluation_refusal(_plan(), replace(data, eval_fraction=0.0), privacy)
    )


def test_a_release_past_the_runs_limit_is_declined_and_not_charged(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """max_run_epsilon bounds everything a run charges, its evaluation releases too: the lifetime budget
    would pay this release, the run's limit does not."""
    one_release = PrivacyAccountant(SiloPrivacy.accountant)
    one_release.record_evaluation(ASKED)
    limit = one_release.epsilon(SiloPrivacy(max_epsilon=1.0).max_delta) / 2
    privacy = SiloPrivacy(max_epsilon=10.0, max_run_epsilon=limit, min_evaluation_noise_multiplier=ASKED)
    evaluator = _evaluator(tiny_model_dir, tmp_path, privacy, _plan())
    with pytest.raises(EvaluationDeclinedError, match="max_run_epsilon"):
        evaluator.release(_task(), read_adapter(evaluator.workspace.model))
    assert not (tmp_path / LEDGER_FILE).exists()
