"""A silo's side of a secure-aggregation round over gRPC (docs/secure-aggregation.md): advertise signed
keys, check every peer's against the CA and the pinned peers, share, then upload only the masked update
and answer one unmasking request, through the share-release guard.

Every refusal (a substituted key, a request for both kinds of one peer's shares, too few silos) is logged
with its reason by the participant and raised as a SecureAggregationError; the agent declines the task
with that reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from aslora_core.factor_choice import Selection
from aslora_core.factors import AdapterState, SiloUpdate
from aslora_rpc.certificates import certificate_fingerprint, load_certificate
from aslora_rpc.messages import Task
from aslora_rpc.secure_aggregation.context import RoundContext
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.fixed_point import RingCodec, UpdateLayout
from aslora_rpc.secure_aggregation.participant import Participant, SigningCredentials
from aslora_rpc.secure_aggregation.release_guard import JOURNAL_FILE as RELEASES_FILE
from aslora_rpc.secure_aggregation.release_guard import ShareReleaseGuard
from aslora_rpc.secure_aggregation.signatures import PeerTrust, PinnedPeers
from aslora_rpc.secure_aggregation_wire import ring_to_bytes
from aslora_rpc.tls import TlsFiles
from aslora_rpc.transfer import SpooledPayload
from aslora_silo.client import CoordinatorClient
from aslora_silo.secure_round_journal import SecureRoundEntry, SecureRoundJournal

LOGGER = logging.getLogger(__name__)
UNIFORM_WEIGHT = 1.0
"""A silo's weight under uniform weighting; otherwise its own dataset size."""
STEP_MARGIN_SECONDS = 30.0
"""How much longer than the round's deadline a silo waits for a step of the protocol to close."""
MIN_POLL_SECONDS = 0.5
"""A step's poll is repeated at most this often (or as often as the silo's wait, if shorter)."""
Answer = TypeVar("Answer")


def peer_trust(tls: TlsFiles, own_name: str, pinned: PinnedPeers) -> PeerTrust:
    """The federation CA and the pinned peers, with this silo's own certificate pinned under its name;
    SecureAggregationError if the config pins another certificate for this silo's own name."""
    own = certificate_fingerprint(load_certificate(tls.cert.read_bytes()))
    if pinned.fingerprints.get(own_name, own) != own:
        raise SecureAggregationError(
            f"[secure_aggregation.peers] pins another certificate for this silo's own name {own_name!r}"
        )
    return PeerTrust(
        ca_certificate=load_certificate(tls.ca_cert.read_bytes()),
        pinned=PinnedPeers({**pinned.fingerprints, own_name: own}),
    )


class SecureTask:
    """One task's round at one silo: its participant (with secrets kept in the journal) and the calls."""

    def __init__(
        self,
        client: CoordinatorClient,
        *,
        run_id: str,
        silo_id: str,
        task: Task,
        tls: TlsFiles,
        trust: PeerTrust,
        state_dir: Path,
        wait_seconds: float,
    ) -> None:
        """Resume the task's kept secrets, or make and keep new ones before anything is sent."""
        plan = task.secure_aggregation
        if plan is None:
            raise SecureAggregationError("the task does not run secure aggregation")
        self.plan = plan
        self.task = task
        self.silo_id = silo_id
        self._client = client
        self._wait = wait_seconds
        self._journal = SecureRoundJournal(state_dir)
        context = RoundContext(run_id, task.task_id, plan.silos, plan.threshold)
        entry = self._journal.entry_for(run_id, task.task_id)
        participant = Participant(
            context,
            silo_id,
            SigningCredentials.from_tls(tls),
            trust,
            ShareReleaseGuard(state_dir / RELEASES_FILE),
            secrets=None if entry is None else entry.secrets,
        )
        if entry is None:
            entry = SecureRoundEntry.new(run_id, task.task_id, participant.secrets)
            self._journal.begin(entry)
        self._entry = entry
        self.participant = participant

    def exchange(self) -> None:
        """Advertise the keys, check the peers' and send them shares, then open the shares they sent."""
        task_id = self.task.task_id
        advertisements = self._poll(
            "the key step",
            lambda: self._client.exchange_keys(
                self.silo_id, task_id, self.participant.advertisement, self._wait
            ),
        )
        sealed = self.participant.share_keys(advertisements)
        inbox = self._poll(
            "the share step",
            lambda: self._client.exchange_shares(self.silo_id, task_id, sealed, self._wait),
        )
        self.participant.receive_shares(inbox)

    def kept_upload(self) -> SpooledPayload | None:
        """The masked update sent in an earlier attempt of this task, if any: sent again only when the same
        silos shared with the same keys (refused otherwise)."""
        kept = self._journal.masked_update(self._entry)
        if kept is None:
            return None
        peers = self.participant.peer_keys
        before = self._entry.peer_keys()
        changed = sorted(s for s in before if s in self.participant.sharers and peers.get(s) != before[s])
        if changed:
            raise SecureAggregationError(f"the keys of {changed} differ from those this task was masked with")
        self.participant.adopt_masked(frozenset(before))
        return kept

    def masked_upload(
        self, update: SiloUpdate, global_state: AdapterState, selection: Selection
    ) -> SpooledPayload:
        """Encode the update in the round's layout with its public weight, mask it, keep it, return it."""
        weight = self.plan.weight
        if weight not in (update.weight, UNIFORM_WEIGHT):
            raise SecureAggregationError(
                f"the task weighs this silo {weight:g}, its dataset size is {update.weight:g}"
            )
        layout = UpdateLayout.for_round(global_state, selection, self.plan.statistics)
        codec = RingCodec(round_weight=self.plan.round_weight, fraction_bits=self.plan.fraction_bits)
        masked = self.participant.mask(codec.encode(replace(update, weight=weight), layout))
        peers = {
            silo: keys
            for silo, keys in self.participant.peer_keys.items()
            if silo in self.participant.sharers
        }
        kept = self._journal.keep_masked(self._entry, peers, ring_to_bytes(masked))
        self._entry = self._journal.entry_for(self._entry.run_id, self._entry.task_id) or self._entry
        return kept

    def answer_unmasking(self) -> None:
        """Wait for the coordinator's survivor set and release this silo's shares for it (the guard records
        them first, and refuses both kinds of one peer's)."""
        task_id = self.task.task_id
        request = self._poll(
            "the unmasking request", lambda: self._client.unmask_request(self.silo_id, task_id, self._wait)
        )
        release = self.participant.release(request)
        self._client.release_shares(release)
        LOGGER.info(
            "silo %s: task %s: released shares for %d survivor(s), %d dropped",
            self.silo_id,
            task_id,
            len(release.self_mask),
            len(release.mask_key),
        )

    def _poll(self, step: str, call: Callable[[], Answer | None]) -> Answer:
        """Call until the coordinator answers; SecureAggregationError past the round's deadline."""
        give_up = time.monotonic() + self.task.seconds_to_deadline + STEP_MARGIN_SECONDS
        while True:
            asked = time.monotonic()
            answer = call()
            if answer is not None:
                return answer
            if time.monotonic() > give_up:
                raise SecureAggregationError(f"{step} did not close before the round's deadline")
            # A coordinator that answers at once (shutting down, say) is not asked again at once.
            time.sleep(max(0.0, min(self._wait, MIN_POLL_SECONDS) - (time.monotonic() - asked)))
