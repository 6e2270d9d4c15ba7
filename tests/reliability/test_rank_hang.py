"""A training rank that hangs (SIGSTOP) fails the round at the lead once the rank timeout passes: the
round was charged once, the hung rank is killed, and the next round starts the ranks anew and trains."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from aslora_core.config import ComputeSettings
from aslora_core.factor_choice import FactorChoice
from aslora_core.training.ranks import LEAD_RANK, RankFailedError
from aslora_silo.config import LocalData, RankSettings, SiloPrivacy
from aslora_silo.ledger import SiloLedger
from aslora_silo.rank_worker import ReplicaSpec
from aslora_silo.training_ranks import TrainingRanks
from tests.grpc.helpers import TEST_SILO_BUDGET, small_run_plan, write_tsv

STEPS = 2
SIGMA = 1.0
RANK_TIMEOUT_SECONDS = 5.0
PRIVACY = SiloPrivacy(max_epsilon=TEST_SILO_BUDGET, test_mode=True)


def test_a_hung_rank_fails_its_round_after_the_timeout_and_the_next_round_starts_the_ranks_again(
    tiny_model_dir: Path, tmp_path: Path, single_thread: None
) -> None:
    ledger = SiloLedger(tmp_path, PRIVACY)
    spec = ReplicaSpec(
        silo_id="silo-a",
        model_path=tiny_model_dir,
        data=LocalData(train_path=write_tsv(tmp_path / "train.tsv", 24)),
        compute=ComputeSettings(physical_batch_size=8, max_length=16),
        privacy=PRIVACY,
        plan=small_run_plan(rounds=3, local_steps=STEPS, test_mode=True),
        state_dir=tmp_path,
        delta=ledger.delta,
    )
    ranks = TrainingRanks(spec, RankSettings(devices=2, timeout_seconds=RANK_TIMEOUT_SECONDS))
    workspace = spec.workspace(LEAD_RANK, ledger, ranks)
    selection = dict.fromkeys(workspace.layer_names, FactorChoice.B)
    try:
        assert workspace.train(0, workspace.template, selection, SIGMA).steps == STEPS
        (hung,) = ranks.process_ids
        os.kill(hung, signal.SIGSTOP)
        with pytest.raises(RankFailedError, match="every one of the 2 training ranks lives, but one hung"):
            workspace.train(1, workspace.template, selection, SIGMA)
        assert ranks.process_ids == []  # the hung rank was killed
        workspace.train(2, workspace.template, selection, SIGMA)
        assert len(ranks.process_ids) == 1 and ranks.process_ids != [hung]
    finally:
        workspace.close()
    # Each round charged once, the failed one included (before any record was read).
    assert ledger.snapshot().steps_taken == 3 * STEPS
