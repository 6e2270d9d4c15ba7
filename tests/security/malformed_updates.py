"""A seeded generator of malformed uploads, each with the error codes the coordinator may answer with.

Every case starts from a well-formed update of the hostile silo for the open task (the global factors it
was asked to train, unchanged) and breaks one thing: tensors, metadata, bytes, the stream, or the header.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from aslora.v1 import federation_pb2 as pb
from aslora_core.factor_choice import Factor, FactorChoice
from aslora_core.factors import (
    AdapterState,
    CurvatureStatistics,
    FactorStatistics,
    SiloStatistics,
    SiloUpdate,
)
from aslora_core.serialization import update_to_bytes
from aslora_rpc.error_codes import ErrorCode

CASES_PER_CATEGORY = 75
MAX_GARBAGE_BYTES = 65_536
MIN_HUGE_EXPONENT = 4
MAX_HUGE_EXPONENT = 30
"""Offsets of 1e4 .. 1e30 keep float32 values finite while dwarfing the adapter's norm."""
WRONG_DTYPES = (torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int8)
NON_FINITE = (float("nan"), float("inf"), float("-inf"))
Messages = list[pb.UploadUpdateRequest]


@dataclass(frozen=True)
class MalformedUpload:
    """One upload attempt: its messages, and the error codes that count as a correct refusal."""

    category: str
    messages: Messages
    expected: frozenset[ErrorCode]


def well_formed_update(
    silo_id: str, weight: float, state: AdapterState, selection: dict[str, FactorChoice]
) -> SiloUpdate:
    """An update the coordinator would accept: the selected global factors and the head, unchanged."""
    return SiloUpdate(
        silo_id=silo_id,
        weight=weight,
        factors={
            layer: {which: state.layers[layer].factor(which).clone() for which in choice.factors}
            for layer, choice in selection.items()
        },
        head={name: tensor.clone() for name, tensor in state.head.items()},
    )


def upload_messages(
    silo_id: str, task_id: str, payload: bytes, *, size: int | None = None, sha256: bytes | None = None
) -> Messages:
    """A header announcing `size` and `sha256` (default: the payload's own), then the payload in chunks."""
    header = pb.UploadHeader(silo_id=silo_id, task_id=task_id, epsilon_spent=0.0)
    header.update.size_bytes = len(payload) if size is None else size
    header.update.sha256 = hashlib.sha256(payload).digest() if sha256 is None else sha256
    chunk = max(len(payload) // 3, 1)
    parts = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]
    return [pb.UploadUpdateRequest(header=header), *(pb.UploadUpdateRequest(chunk=p) for p in parts)]


class MalformedUploads:
    """Generates CASES_PER_CATEGORY cases of every category from one well-formed update."""

    def __init__(self, base: SiloUpdate, task_id: str, max_payload_bytes: int, seed: int) -> None:
        self.base = base
        self.task_id = task_id
        self.max_payload_bytes = max_payload_bytes
        self.rng = np.random.default_rng(seed)
        self.valid = update_to_bytes(base)

    def __iter__(self) -> Iterator[MalformedUpload]:
        categories: dict[str, tuple[Callable[[], Messages], frozenset[ErrorCode]]] = {
            "wrong shape": (self._wrong_shape, _codes(ErrorCode.INVALID_UPDATE)),
            "wrong dtype": (self._wrong_dtype, _codes(ErrorCode.INVALID_UPDATE)),
            "NaN or Inf": (self._non_finite, _codes(ErrorCode.INVALID_UPDATE)),
            "non-finite statistics": (self._non_finite_statistics, _codes(ErrorCode.INVALID_UPDATE)),
            "non-finite secant sums": (self._non_finite_secants, _codes(ErrorCode.INVALID_UPDATE)),
            "secant sums of an untrained factor": (self._untrained_secants, _codes(ErrorCode.INVALID_UPDATE)),
            "finite but huge": (self._huge, _codes(ErrorCode.UPDATE_TOO_LARGE)),
            "missing or extra tensor": (self._wrong_names, _codes(ErrorCode.INVALID_UPDATE)),
            "wrong factor": (self._wrong_factor, _codes(ErrorCode.INVALID_UPDATE)),
            "wrong weight or silo": (self._wrong_metadata, _codes(ErrorCode.INVALID_UPDATE)),
            "garbage bytes": (self._garbage, _codes(ErrorCode.INVALID_UPDATE)),
            "truncated chunks": (self._truncated, _codes(ErrorCode.PAYLOAD_CORRUPT)),
            "bad checksum": (self._bad_checksum, _codes(ErrorCode.PAYLOAD_CORRUPT)),
            "oversize": (self._oversize, _codes(ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.PAYLOAD_CORRUPT)),
            "wrong round or task": (self._wrong_task, _codes(ErrorCode.UNKNOWN_TASK, ErrorCode.ROUND_CLOSED)),
            "another silo's name": (self._impersonation, _codes(ErrorCode.IDENTITY_MISMATCH)),
            "malformed stream": (self._malformed_stream, _codes(ErrorCode.MALFORMED_MESSAGE)),
        }
        for category, (make, expected) in categories.items():
            for _ in range(CASES_PER_CATEGORY):
                yield MalformedUpload(category, make(), expected)

    # ---- helpers -----------------------------------------------------------------------------------

    def _send(self, update: SiloUpdate) -> Messages:
        return upload_messages(self.base.silo_id, self.task_id, update_to_bytes(update))

    def _pick_tensor(self) -> tuple[str, Factor | None]:
        """A random (layer, factor) of the update, or (head name, None)."""
        keys: list[tuple[str, Factor | None]] = [
            (layer, which) for layer, trained in self.base.factors.items() for which in trained
        ]
        keys += [(name, None) for name in self.base.head]
        return keys[int(self.rng.integers(len(keys)))]

    def _with_tensor(self, change: Callable[[torch.Tensor], torch.Tensor]) -> SiloUpdate:
        name, which = self._pick_tensor()
        if which is None:
            return replace(self.base, head={**self.base.head, name: change(self.base.head[name])})
        layer = {**self.base.factors[name], which: change(self.base.factors[name][which])}
        return replace(self.base, factors={**self.base.factors, name: layer})

    # ---- categories ----------------------------------------------------------------------------------

    def _wrong_shape(self) -> Messages:
        def reshape(tensor: torch.Tensor) -> torch.Tensor:
            kind = int(self.rng.integers(3))
            if kind == 0 and tensor.dim() > 1:
                return tensor.flatten()
            if kind == 1:
                return torch.cat([tensor, tensor[..., :1]], dim=-1)
            return tensor.unsqueeze(0)

        return self._send(self._with_tensor(reshape))

    def _wrong_dtype(self) -> Messages:
        dtype = WRONG_DTYPES[int(self.rng.integers(len(WRONG_DTYPES)))]
        return self._send(self._with_tensor(lambda t: t.to(dtype)))

    def _non_finite(self) -> Messages:
        value = NON_FINITE[int(self.rng.integers(len(NON_FINITE)))]

        def poison(tensor: torch.Tensor) -> torch.Tensor:
            poisoned = tensor.clone().flatten()
            poisoned[int(self.rng.integers(poisoned.numel()))] = value
            return poisoned.view_as(tensor)

        return self._send(self._with_tensor(poison))

    def _non_finite_statistics(self) -> Messages:
        layer = sorted(self.base.factors)[int(self.rng.integers(len(self.base.factors)))]
        which = next(iter(self.base.factors[layer]))
        value = NON_FINITE[int(self.rng.integers(len(NON_FINITE)))]
        statistics = SiloStatistics(
            layers={layer: {which: FactorStatistics(grad_sq=value, proj_sq=1.0)}}, steps=1, noise_variance=1.0
        )
        return self._send(replace(self.base, statistics=statistics))

    def _secants_update(self, factor: Callable[[str], Factor], secants: CurvatureStatistics) -> Messages:
        """The base update whose statistics carry `secants` for a random layer's `factor(layer)`."""
        layer = sorted(self.base.factors)[int(self.rng.integers(len(self.base.factors)))]
        entry = FactorStatistics(grad_sq=1.0, proj_sq=1.0, curvature=secants)
        statistics = SiloStatistics(layers={layer: {factor(layer): entry}}, steps=2, noise_variance=1.0)
        return self._send(replace(self.base, statistics=statistics))

    def _non_finite_secants(self) -> Messages:
        values = [1.0, 1.0, 1.0]
        values[int(self.rng.integers(len(values)))] = NON_FINITE[int(self.rng.integers(len(NON_FINITE)))]
        return self._secants_update(
            lambda layer: next(iter(self.base.factors[layer])), CurvatureStatistics(*values)
        )

    def _untrained_secants(self) -> Messages:
        def untrained(layer: str) -> Factor:
            return next(f for f in Factor if f not in self.base.factors[layer])

        return self._secants_update(untrained, CurvatureStatistics(1.0, 1.0, 1.0))

    def _huge(self) -> Messages:
        offset = 10.0 ** int(self.rng.integers(MIN_HUGE_EXPONENT, MAX_HUGE_EXPONENT + 1))
        return self._send(self._with_tensor(lambda t: t + offset))

    def _wrong_names(self) -> Messages:
        name, which = self._pick_tensor()
        if self.rng.integers(2) == 0:  # drop one tensor
            if which is None:
                head = {k: v for k, v in self.base.head.items() if k != name}
                return self._send(replace(self.base, head=head))
            layer = {k: v for k, v in self.base.factors[name].items() if k is not which}
            factors = (
                {**self.base.factors, name: layer}
                if layer
                else {k: v for k, v in self.base.factors.items() if k != name}
            )
            return self._send(replace(self.base, factors=factors))
        extra = f"intruder.{int(self.rng.integers(1_000_000))}"
        source = next(iter(self.base.head.values()))
        return self._send(replace(self.base, head={**self.base.head, extra: source.clone()}))

    def _wrong_factor(self) -> Messages:
        layer = sorted(self.base.factors)[int(self.rng.integers(len(self.base.factors)))]
        trained = self.base.factors[layer]
        which = next(iter(trained))
        other = Factor.B if which is Factor.A else Factor.A
        swapped = {other: torch.zeros(trained[which].shape[::-1], dtype=trained[which].dtype)}
        if self.rng.integers(2) == 0:
            swapped[which] = trained[which]  # both factors where one was asked
        return self._send(replace(self.base, factors={**self.base.factors, layer: swapped}))

    def _wrong_metadata(self) -> Messages:
        if self.rng.integers(2) == 0:
            factor = float(self.rng.choice([0.5, 2.0, 1e6, -1.0]))
            return self._send(replace(self.base, weight=self.base.weight * factor))
        return self._send(replace(self.base, silo_id=f"silo-{int(self.rng.integers(1_000_000))}"))

    def _garbage(self) -> Messages:
        size = int(self.rng.integers(1, MAX_GARBAGE_BYTES))
        payload = self.rng.bytes(size)
        if self.rng.integers(2) == 0:  # a plausible safetensors length prefix, then noise
            payload = len(self.valid).to_bytes(8, "little") + payload
        return upload_messages(self.base.silo_id, self.task_id, payload)

    def _truncated(self) -> Messages:
        cut = int(self.rng.integers(0, len(self.valid)))
        messages = upload_messages(self.base.silo_id, self.task_id, self.valid)
        header = messages[0]
        return [header, *upload_messages(self.base.silo_id, self.task_id, self.valid[:cut])[1:]]

    def _bad_checksum(self) -> Messages:
        return upload_messages(self.base.silo_id, self.task_id, self.valid, sha256=self.rng.bytes(32))

    def _oversize(self) -> Messages:
        if self.rng.integers(2) == 0:  # announced beyond the cap: refused before any chunk is read
            size = self.max_payload_bytes + int(self.rng.integers(1, self.max_payload_bytes))
            return upload_messages(self.base.silo_id, self.task_id, self.valid, size=size)
        padded = self.valid + self.rng.bytes(int(self.rng.integers(1, MAX_GARBAGE_BYTES)))
        announced = upload_messages(self.base.silo_id, self.task_id, self.valid)[0]
        return [announced, *upload_messages(self.base.silo_id, self.task_id, padded)[1:]]

    def _wrong_task(self) -> Messages:
        kind = int(self.rng.integers(3))
        if kind == 0:
            task = f"{self.task_id.rsplit('-r', 1)[0]}-r{int(self.rng.integers(1, 100))}-a0"
        elif kind == 1:
            task = self.task_id + "x"
        else:
            task = self.rng.bytes(8).hex()
        return upload_messages(self.base.silo_id, task, self.valid)

    def _impersonation(self) -> Messages:
        return upload_messages(f"silo-{int(self.rng.integers(1_000_000))}", self.task_id, self.valid)

    def _malformed_stream(self) -> Messages:
        messages = upload_messages(self.base.silo_id, self.task_id, self.valid)
        kind = int(self.rng.integers(3))
        if kind == 0:
            return messages[1:]  # chunks without a header
        if kind == 1:
            return []  # nothing at all
        return [messages[0], messages[0], *messages[1:]]  # a second header among the chunks


def _codes(*codes: ErrorCode) -> frozenset[ErrorCode]:
    return frozenset(codes)
