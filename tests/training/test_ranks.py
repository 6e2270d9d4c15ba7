"""Two gloo ranks train the round one process trains: the same update (within float32 rounding of sums
in another order), the same epsilon, the same records seen; and both ranks end with the same adapter."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.multiprocessing as mp

from aslora_core.factors import SiloUpdate
from aslora_core.training.rank_group import join_group, leave_group, serve_store
from aslora_core.training.ranks import RankCollective
from tests.training.rank_peer import ENGINES, GROUP_TIMEOUT_SECONDS, serve_peer, train_round, update_tensors

TOLERANCE = 1e-6
PEER_EXIT_SECONDS = 60.0


def _assert_close(actual: SiloUpdate, expected: SiloUpdate) -> None:
    ours, theirs = update_tensors(actual), update_tensors(expected)
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.allclose(ours[name], tensor, rtol=0.0, atol=TOLERANCE), name


def test_two_gloo_ranks_give_the_update_and_epsilon_of_one_process(
    tiny_model_dir: Path, single_thread: None
) -> None:
    alone = [train_round(tiny_model_dir, engine, None) for engine in ENGINES]
    store = serve_store(2, GROUP_TIMEOUT_SECONDS)
    context = mp.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    peer = context.Process(target=serve_peer, args=(tiny_model_dir, store.port, sending), daemon=True)
    peer.start()
    try:
        join_group(0, 2, store=store, timeout_seconds=GROUP_TIMEOUT_SECONDS)
        ranks = RankCollective(torch.device("cpu"))
        together = [train_round(tiny_model_dir, engine, ranks) for engine in ENGINES]
        peer_updates = receiving.recv()
    finally:
        leave_group()
        peer.join(PEER_EXIT_SECONDS)
        if peer.is_alive():
            peer.kill()
    assert peer.exitcode == 0
    for (update, epsilon, seen), (one_update, one_epsilon, one_seen), peer_update in zip(
        together, alone, peer_updates, strict=True
    ):
        _assert_close(update, one_update)
        assert (epsilon, seen) == (one_epsilon, one_seen)
        # The ranks stepped alike: rank 1's replica holds rank 0's adapter exactly.
        for name, tensor in update_tensors(update).items():
            assert torch.equal(torch.from_numpy(peer_update[name]), tensor), name
