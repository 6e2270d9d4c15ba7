"""A silo's training rank other than the lead: a process of its own that builds the same workspace (model
and records), joins the ranks' process group and trains its share of each round the lead orders, until
the lead says stop or is gone. It never speaks to the coordinator nor writes the silo's ledger."""

from __future__ import annotations

from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from aslora_core.config import ComputeSettings
from aslora_core.factor_choice import FactorChoice
from aslora_core.privacy import PrivacyAccountant
from aslora_core.serialization import state_from_bytes, state_to_bytes
from aslora_core.training.rank_group import backend_for, join_group, leave_group
from aslora_core.training.ranks import RankCollective
from aslora_rpc.messages import RunPlan
from aslora_silo.config import LocalData, SiloPrivacy
from aslora_silo.rank_devices import rank_device
from aslora_silo.rank_fault_point import fault_point
from aslora_silo.workspace import RoundLedger, RoundOrder, RoundRanks, Workspace

READY, DONE, FAILED = "ready", "done", "failed"
"""What a rank tells the lead: its replica is built; its share of the round is trained; it failed."""
Reply = tuple[str, str]
"""One of READY, DONE or FAILED, and the failure's description (else empty)."""
OrderMessage = tuple[int, bytes, dict[str, FactorChoice], float]
"""A round order on a rank's pipe, the global adapter as safetensors bytes (tensors sent as such would
live in the lead's shared memory)."""


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything a rank needs to build the lead's workspace again: the silo's own settings and the run."""

    silo_id: str
    model_path: Path
    data: LocalData
    compute: ComputeSettings
    privacy: SiloPrivacy
    plan: RunPlan
    state_dir: Path
    delta: float
    """The silo's delta, for the epsilon figures (the lead's ledger alone is charged)."""

    def workspace(self, rank: int, ledger: RoundLedger, ranks: RoundRanks | None = None) -> Workspace:
        """The workspace of training rank `rank`, on that rank's device."""
        return Workspace(
            silo_id=self.silo_id,
            model_path=self.model_path,
            data=self.data,
            compute=replace(self.compute, device=rank_device(self.compute.device, rank)),
            privacy=self.privacy,
            plan=self.plan,
            ledger=ledger,
            state_dir=self.state_dir,
            ranks=ranks,
        )


class ReplicaLedger(PrivacyAccountant):
    """A rank's own record of the steps it took part in, thrown away with it: the lead charges the silo."""

    def __init__(self, delta: float) -> None:
        """An empty record; `delta` is the silo's."""
        super().__init__()
        self.delta = delta


def order_message(order: RoundOrder) -> OrderMessage:
    """`order` as it goes down a rank's pipe."""
    return (order.round_index, state_to_bytes(order.global_state), dict(order.selection), order.sigma)


def order_from_message(message: OrderMessage) -> RoundOrder:
    """The order `order_message` sent."""
    round_index, state, selection, sigma = message
    return RoundOrder(round_index, state_from_bytes(state), selection, sigma)


@dataclass(frozen=True)
class RankPlace:
    """Where a rank stands in the group: its number, the group's size, the lead's store and the timeout."""

    rank: int
    world_size: int
    port: int
    """The lead's TCP store, on loopback."""
    timeout_seconds: float


def serve_rank(spec: ReplicaSpec, place: RankPlace, lead: Connection) -> None:
    """The life of one training rank: build the replica, say READY, join the group through the lead's
    store, then train the share of every round ordered on `lead` (answering DONE, or FAILED with the
    error) until the lead sends None or closes its end."""
    workspace = spec.workspace(place.rank, ReplicaLedger(spec.delta))
    lead.send((READY, ""))
    device = torch.device(workspace.compute.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    join_group(
        place.rank,
        place.world_size,
        port=place.port,
        backend=backend_for(device.type),
        timeout_seconds=place.timeout_seconds,
    )
    try:
        collective = RankCollective(device)
        while (message := _next_order(lead)) is not None:
            order = order_from_message(message)
            try:
                workspace.train_share(order, fault_point(order.round_index), collective)
            except Exception as error:
                lead.send((FAILED, f"{type(error).__name__}: {error}"))
                raise
            lead.send((DONE, ""))
    finally:
        leave_group()


def _next_order(lead: Connection) -> OrderMessage | None:
    """The next order, or None when the lead says stop or is gone."""
    try:
        message: OrderMessage | None = lead.recv()
    except EOFError:
        return None
    return message
