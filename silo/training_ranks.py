"""The lead rank's side of a silo training on several devices: it starts the other ranks (spawned
processes, silo/rank_worker.py), forms the torch.distributed group with them over a loopback store, hands
each round to every rank and, when a rank dies, hangs or fails, ends them all and fails the round with
the reason; the next round starts them again."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import torch
import torch.multiprocessing as mp

from aslora_core.training import LocalResult
from aslora_core.training.rank_group import backend_for, join_group, leave_group, serve_store
from aslora_core.training.ranks import LEAD_RANK, RankCollective, RankFailedError
from aslora_silo.config import RankSettings
from aslora_silo.rank_devices import rank_device
from aslora_silo.rank_worker import (
    DONE,
    FAILED,
    READY,
    RankPlace,
    ReplicaSpec,
    Reply,
    order_message,
    serve_rank,
)
from aslora_silo.workspace import LeadTraining, RoundOrder

LOGGER = logging.getLogger(__name__)
POLL_SECONDS = 0.2
"""How often the lead looks at a rank it waits for (is it still alive?)."""
EXIT_SECONDS = 5.0
"""How long a rank told to stop may take before it is killed."""
BUILD_SECONDS = 1800.0
"""How long a rank may take to build its replica (read a large model from disk) before the round fails."""
REAP_SECONDS = 1.0
"""How long the lead waits for a rank whose collective broke to be seen dead, to say how it died."""


@dataclass
class _Rank:
    rank: int
    process: BaseProcess
    pipe: Connection
    failure: str = field(default="")
    """What the rank said when it failed, if it did."""


class TrainingRanks:
    """Ranks 1 to N-1 of one silo's training, in processes of their own; this process is rank 0."""

    def __init__(self, spec: ReplicaSpec, settings: RankSettings) -> None:
        """Nothing starts until the first round."""
        self.spec = spec
        self.settings = settings
        self._ranks: list[_Rank] = []
        self._collective: RankCollective | None = None

    @property
    def process_ids(self) -> list[int]:
        """The other ranks' process ids, while they run."""
        return [rank.process.pid for rank in self._ranks if rank.process.pid is not None]

    def train(self, order: RoundOrder, lead: LeadTraining) -> LocalResult:
        """Start the ranks if they are not running, have each train its share of `order` while this
        process runs `lead`, and wait for every rank's answer; RankFailedError (every rank ended) when one
        died, hung past the timeout or failed."""
        try:
            collective = self._collective or self._start()
            message = order_message(order)
            for rank in self._ranks:
                self._send(rank, message)
            result = lead(collective)
            for rank in self._ranks:
                self._await(rank, DONE, f"training round {order.round_index}", self.settings.timeout_seconds)
            return result
        except RankFailedError as error:
            reason = self._diagnosis(error)
            self.stop(REAP_SECONDS)
            raise RankFailedError(reason) from error
        except BaseException:
            # The lead failed on its own (or was interrupted): the others cannot finish the round either.
            self.stop(REAP_SECONDS)
            raise

    def stop(self, grace_seconds: float = EXIT_SECONDS) -> None:
        """Tell every rank to stop, leave the group, and kill a rank that has not exited in `grace_seconds`
        (short after a failure: a rank still inside a collective cannot finish it)."""
        for rank in self._ranks:
            with contextlib.suppress(OSError):  # that rank is gone already
                rank.pipe.send(None)
        leave_group()
        for rank in self._ranks:
            rank.process.join(grace_seconds)
            if rank.process.is_alive():
                LOGGER.warning(
                    "silo %s: training rank %d does not stop; killing it", self.spec.silo_id, rank.rank
                )
                rank.process.kill()
                rank.process.join()
            rank.pipe.close()
        self._ranks = []
        self._collective = None

    def _start(self) -> RankCollective:
        world = self.settings.devices
        timeout = self.settings.timeout_seconds
        store = serve_store(world, timeout)
        context = mp.get_context("spawn")
        for number in range(1, world):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=serve_rank,
                args=(self.spec, RankPlace(number, world, store.port, timeout), theirs),
                name=f"{self.spec.silo_id}-rank-{number}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._ranks.append(_Rank(number, process, ours))
        for rank in self._ranks:
            self._await(rank, READY, "building its replica", BUILD_SECONDS)
        device = torch.device(rank_device(self.spec.compute.device, LEAD_RANK))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            join_group(
                LEAD_RANK, world, store=store, backend=backend_for(device.type), timeout_seconds=timeout
            )
        except RuntimeError as error:  # torch.distributed's store and backend errors
            raise RankFailedError(f"the training ranks could not form their group: {error}") from error
        LOGGER.info(
            "silo %s: %d training ranks on %s (%s), processes %s",
            self.spec.silo_id,
            world,
            self.spec.compute.device,
            backend_for(device.type),
            self.process_ids,
        )
        self._collective = RankCollective(device)
        return self._collective

    def _send(self, rank: _Rank, message: object) -> None:
        try:
            rank.pipe.send(message)
        except OSError as error:
            raise RankFailedError(f"training rank {rank.rank} is gone: {error}") from error

    def _await(self, rank: _Rank, expected: str, doing: str, timeout: float) -> None:
        """Wait for `rank` to answer `expected`, while it lives, at most `timeout` seconds."""
        give_up = time.monotonic() + timeout
        while not rank.pipe.poll(POLL_SECONDS):
            if not rank.process.is_alive():
                raise RankFailedError(f"training rank {rank.rank} {_exit(rank.process)} while {doing}")
            if time.monotonic() > give_up:
                raise RankFailedError(
                    f"training rank {rank.rank} did not answer within {timeout:g} s while {doing}"
                )
        try:
            reply: Reply = rank.pipe.recv()
        except EOFError as error:
            raise RankFailedError(f"training rank {rank.rank} is gone while {doing}") from error
        if reply[0] == FAILED:
            rank.failure = reply[1]
            raise RankFailedError(f"training rank {rank.rank} failed while {doing}: {reply[1]}")
        if reply[0] != expected:
            raise RankFailedError(f"training rank {rank.rank} answered {reply[0]!r} while {doing}")

    def _diagnosis(self, error: RankFailedError) -> str:
        """Why the round failed, naming the rank at fault where one died or said why it failed."""
        world = self.settings.devices
        for rank in self._ranks:
            rank.process.join(REAP_SECONDS if rank.process.is_alive() else 0)
            if rank.failure:
                return f"training rank {rank.rank} of {world} failed: {rank.failure}"
            if rank.pipe.poll(0):
                try:
                    reply: Reply = rank.pipe.recv()
                except (EOFError, OSError):
                    reply = ("", "")
                if reply[0] == FAILED:
                    return f"training rank {rank.rank} of {world} failed: {reply[1]}"
            if not rank.process.is_alive():
                return f"training rank {rank.rank} of {world} {_exit(rank.process)}"
        return f"every one of the {world} training ranks lives, but one hung or broke off: {error}"


def _exit(process: BaseProcess) -> str:
    """How a process ended, in words."""
    code = process.exitcode
    if code is None:
        return "is still running"
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
