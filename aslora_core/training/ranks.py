"""One DP-SGD step across training ranks (torch.distributed): the Poisson sample drawn once, at rank 0,
and dealt out; each rank's clipped sum added up by an all-reduce; the noise drawn once, at rank 0, and
the noised gradient broadcast, so that every rank steps alike and the mechanism is that of one process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

LEAD_RANK = 0
"""The rank that draws the sample and the noise (and, in a silo, speaks to the coordinator)."""
INDEX_DTYPE = torch.int64

Noiser = Callable[[list[torch.Tensor]], list[torch.Tensor]]
"""Adds the step's noise to each clipped sum (called at the lead rank only)."""


class RankFailedError(RuntimeError):
    """A collective across the ranks failed: a rank died, hung past the timeout or broke off."""


@dataclass(frozen=True)
class BatchShare:
    """This rank's records of a step's logical batch, and the size of the whole logical batch."""

    indices: np.ndarray
    logical_size: int


def single_share(indices: np.ndarray) -> BatchShare:
    """The whole logical batch, for a trainer that runs alone."""
    return BatchShare(indices, len(indices))


class RankCollective:
    """The collectives of a DP step over torch.distributed's default process group (set up by the caller);
    any failure of the group raises RankFailedError."""

    def __init__(self, device: torch.device) -> None:
        """Read this process's rank and the group's size; `device` is where this rank's tensors live (the
        CPU for gloo, this rank's GPU for NCCL)."""
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device

    @property
    def is_lead(self) -> bool:
        """Whether this rank draws the sample and the noise."""
        return self.rank == LEAD_RANK

    def share_batch(self, draw: Callable[[], np.ndarray], lengths: np.ndarray) -> BatchShare:
        """Draw the logical batch at the lead rank (`draw` is called there only), send it to every rank and
        deal it out: records ordered by length (`lengths`, per record) go round the ranks in turn, so each
        rank gets a disjoint share with a like amount of tokens."""
        size = torch.zeros(1, dtype=INDEX_DTYPE, device=self.device)
        drawn = draw() if self.is_lead else np.zeros(0, dtype=np.int64)
        if self.is_lead:
            size[0] = len(drawn)
        self._run(lambda: dist.broadcast(size, LEAD_RANK))
        batch = torch.zeros(int(size.item()), dtype=INDEX_DTYPE, device=self.device)
        if self.is_lead:
            batch.copy_(torch.from_numpy(drawn.astype(np.int64)))
        if len(batch):
            self._run(lambda: dist.broadcast(batch, LEAD_RANK))
        indices = batch.cpu().numpy()
        ordered = indices[np.argsort(lengths[indices], kind="stable")]
        return BatchShare(ordered[self.rank :: self.world_size], len(indices))

    def noise_once(self, summed: Sequence[torch.Tensor], add_noise: Noiser) -> list[torch.Tensor]:
        """The noised gradient of the whole logical batch, the same at every rank: the ranks' clipped sums
        added up, noised by `add_noise` at the lead rank alone, then broadcast from it."""
        dtypes = {tensor.dtype for tensor in summed}
        if len(dtypes) != 1:
            raise ValueError(
                f"the clipped sums mix dtypes {sorted(map(str, dtypes))}; one flat buffer needs one"
            )
        flat = torch.cat([tensor.reshape(-1) for tensor in summed]).to(self.device)
        self._run(lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
        if self.is_lead:
            noised = add_noise(self._split(flat, summed))
            flat = torch.cat([tensor.reshape(-1) for tensor in noised]).to(self.device)
        self._run(lambda: dist.broadcast(flat, LEAD_RANK))
        return [
            part.to(tensor.device) for part, tensor in zip(self._split(flat, summed), summed, strict=True)
        ]

    def sum_value(self, value: float) -> float:
        """`value` summed over the ranks (a round's training loss, say)."""
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        self._run(lambda: dist.all_reduce(total, op=dist.ReduceOp.SUM))
        return float(total.item())

    @staticmethod
    def _split(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        sizes = [tensor.numel() for tensor in like]
        return [part.reshape(tensor.shape) for part, tensor in zip(flat.split(sizes), like, strict=True)]

    @staticmethod
    def _run(collective: Callable[[], object]) -> None:
        try:
            collective()
        except RuntimeError as error:  # torch.distributed's DistError and the backends' errors
            raise RankFailedError(f"a collective across the training ranks failed: {error}") from error
