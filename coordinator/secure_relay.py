"""The silo-facing steps of a secure round (coordinator/secure_round.py): relay the round keys and the
sealed shares, ask the survivors for their shares and collect them for the round driver."""

from __future__ import annotations

from aslora_coordinator.errors import FederationError
from aslora_coordinator.registry import SiloRegistry
from aslora_coordinator.round_state import OpenRound
from aslora_coordinator.run_control import WAIT_SLICE_SECONDS, RunControl
from aslora_coordinator.secure_round import SecureRound
from aslora_coordinator.task_board import TaskBoard
from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.messages import ShareRelease, UnmaskRequest
from aslora_rpc.secure_aggregation.share_encryption import EncryptedShares
from aslora_rpc.secure_aggregation.signatures import KeyAdvertisement


class SecureRelay:
    """Serves the key, share and unmasking steps of the open secure round; every method takes the run's
    lock, and waits on it up to the wait a silo asked for (capped at `max_wait_seconds`)."""

    def __init__(
        self, control: RunControl, registry: SiloRegistry, board: TaskBoard, max_wait_seconds: float
    ) -> None:
        self._control = control
        self._lock = control.lock
        self._registry = registry
        self._board = board
        self._max_wait = max_wait_seconds

    def exchange_keys(
        self, silo_id: str, task_id: str, advertisement: KeyAdvertisement, wait_seconds: float
    ) -> tuple[KeyAdvertisement, ...] | None:
        """Keep the silo's signed round keys; every advertiser's once the key step closes within the wait,
        else None (the silo calls again with the same keys)."""
        if advertisement.silo != silo_id:
            raise FederationError(
                ErrorCode.IDENTITY_MISMATCH, f"keys for {advertisement.silo} from {silo_id}"
            )
        give_up = self._give_up(wait_seconds)
        with self._lock:
            current, secure = self._secure_round(silo_id, task_id)
            secure.offer_keys(advertisement)
            self._lock.notify_all()
            while not secure.close_keys(current.tasks.keys() - current.declined, self._control.clock()):
                if not self._control.wait_until(give_up):
                    return None
                current, secure = self._secure_round(silo_id, task_id)
            self._lock.notify_all()
            return secure.advertisers

    def exchange_shares(
        self, silo_id: str, task_id: str, sealed: tuple[EncryptedShares, ...], wait_seconds: float
    ) -> tuple[EncryptedShares, ...] | None:
        """Keep the shares the silo sealed for its peers; those sealed for it once the share step closes
        within the wait, else None."""
        give_up = self._give_up(wait_seconds)
        with self._lock:
            current, secure = self._secure_round(silo_id, task_id)
            secure.offer_shares(silo_id, sealed)
            self._lock.notify_all()
            while not secure.close_shares(current.tasks.keys() - current.declined, self._control.clock()):
                if not self._control.wait_until(give_up):
                    return None
                current, secure = self._secure_round(silo_id, task_id)
            self._lock.notify_all()
            return secure.inbox(silo_id)

    def unmask_request(self, silo_id: str, task_id: str, wait_seconds: float) -> UnmaskRequest | None:
        """The survivors the silo is asked about once the round's uploads closed (within the wait)."""
        give_up = self._give_up(wait_seconds)
        with self._lock:
            while True:
                self._registry.touch(silo_id)
                unmasking = self._board.unmasking
                if unmasking is not None and unmasking.task_id == task_id and unmasking.secure is not None:
                    request = unmasking.secure.request
                    if request is not None and silo_id in request.survivors:
                        return request
                    raise FederationError(ErrorCode.ROUND_CLOSED, f"{silo_id} is not among the survivors")
                current = self._board.open_round
                if current is None or current.task_id != task_id:
                    self._board.task_round(silo_id, task_id)
                if not self._control.wait_until(give_up):
                    return None

    def release_shares(self, release: ShareRelease) -> None:
        """Keep a survivor's shares for the unmasking."""
        with self._lock:
            self._registry.touch(release.silo)
            unmasking = self._board.unmasking
            if unmasking is None or unmasking.task_id != release.task_id or unmasking.secure is None:
                raise FederationError(ErrorCode.ROUND_CLOSED, f"no unmasking of task {release.task_id}")
            unmasking.secure.accept_release(release)
            self._lock.notify_all()

    def close_unmasking(self, current: OpenRound) -> list[ShareRelease]:
        """Wait until every survivor of a secure round released its shares, the step's time, a stop or the
        run's end; the releases, in silo order."""
        secure = current.secure
        if secure is None:
            raise SecureAggregationError("the round does not run secure aggregation")
        with self._lock:
            while not secure.unmasking_done(self._control.clock()) and not self._control.interrupted:
                self._lock.wait(WAIT_SLICE_SECONDS)
            self._board.unmasking_closed()
            self._lock.notify_all()
            return [secure.releases[silo] for silo in sorted(secure.releases)]

    def _secure_round(self, silo_id: str, task_id: str) -> tuple[OpenRound, SecureRound]:
        self._control.refuse_if_ended()
        return self._board.secure_round(silo_id, task_id)

    def _give_up(self, wait_seconds: float) -> float:
        return self._control.clock() + min(max(wait_seconds, 0.0), self._max_wait)
