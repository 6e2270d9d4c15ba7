"""The round loop, on its own thread: wait for silos, open a round, collect updates, aggregate, evaluate
(at the coordinator, and at the silos when the plan asks).

Aggregation and selection scoring go through aslora_core.rounds.RoundEngine, exactly as in the
in-process simulation, so a deterministic run gives the same adapter over both transports.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import numpy as np

from aslora_coordinator.crash_points import CrashPoint, maybe_crash
from aslora_coordinator.global_model import GlobalModel
from aslora_coordinator.orchestrator import Orchestrator
from aslora_coordinator.registry import SiloRecord
from aslora_coordinator.results_recorder import ResultsRecorder
from aslora_coordinator.round_state import OpenRound, ReceivedUpdate
from aslora_coordinator.state import CoordinatorSnapshot, StateStore
from aslora_coordinator.update_validation import adapter_norm
from aslora_core.factors import SiloStatistics, SiloUpdate
from aslora_core.privacy import derive_seed
from aslora_core.round_numbers import round_number
from aslora_core.rounds import RoundEngine, RoundOutcome
from aslora_core.serialization import state_to_bytes, statistics_bytes
from aslora_rpc.messages import RunState
from aslora_rpc.secure_aggregation.decoding import DecodedMean, decode_mean
from aslora_rpc.secure_aggregation.errors import SecureAggregationError
from aslora_rpc.secure_aggregation.fixed_point import STATISTICS_PER_FACTOR
from aslora_rpc.secure_aggregation.masks import WORD_BYTES
from aslora_rpc.secure_aggregation.unmasking import unmask
from aslora_rpc.transfer import write_payload

LOGGER = logging.getLogger(__name__)
SUM_SILO_ID = "secure-aggregation-sum"
"""The name the decoded mean of a secure round is aggregated under (it is no silo's update)."""


class RoundDriver:
    """Sequences one run's rounds: the engine plans and aggregates, the orchestrator moves the run through
    its transitions, the store keeps checkpoints and the recorder the results."""

    def __init__(
        self,
        *,
        orchestrator: Orchestrator,
        engine: RoundEngine,
        model: GlobalModel,
        recorder: ResultsRecorder,
        store: StateStore,
        spool_dir: Path,
        config_fingerprint: str,
        resumed: bool = False,
    ) -> None:
        """`resumed`: the engine, orchestrator and recorder were restored from a checkpoint."""
        self.orchestrator = orchestrator
        self.engine = engine
        self.model = model
        self.recorder = recorder
        self.store = store
        self.spool_dir = spool_dir
        self.config_fingerprint = config_fingerprint
        self.resumed = resumed
        self.first_attempt = 0
        """Where the next round's attempts start (a resumed run may be in the middle of redoing a round)."""
        self._awaited: frozenset[str] = frozenset()
        """Silos the next attempt waits for, up to the heartbeat timeout: after a resume, those of the
        checkpoint, so that an attempt the restart interrupted is handed out again to the silos it was
        handed to (a secure round's masks bind its participants) rather than to the first to call back."""
        self._config = orchestrator.config

    def start(self) -> threading.Thread:
        """Run the loop on a daemon thread."""
        thread = threading.Thread(target=self.run, name="round-driver", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """The whole run; an unexpected error fails the run instead of leaving silos waiting. A run that
        ended is checkpointed once more, so that its last state (silos that declined it, say) is kept."""
        try:
            self._run()
        except Exception as error:
            LOGGER.exception("the round driver failed")
            self.orchestrator.end(
                RunState.FAILED, f"internal error in the round driver ({type(error).__name__})"
            )
        if self.orchestrator.state.ended:
            self.store.save(self._snapshot())

    def _run(self) -> None:
        if self.resumed:
            self._awaited = frozenset(
                record.silo_id
                for record in self.orchestrator.silo_records()
                if not record.evicted and record.declined_reason is None
            )
        else:
            self.recorder.record_initial(self.model.evaluate(self.engine.state))
            # The first checkpoint fixes the run id: a coordinator killed in round 0 resumes the same run.
            self.store.save(self._snapshot())
        rounds = self._config.federation.rounds
        while self.engine.round_index < rounds:
            if not self._play_round():
                return
        self.orchestrator.end(RunState.FINISHED, f"all {rounds} rounds done")

    def _play_round(self) -> bool:
        """Attempt the next round until it aggregates; False when the run ended instead."""
        orchestrator = self.orchestrator
        index = self.engine.round_index
        selection = self.engine.plan()
        adapter = write_payload(state_to_bytes(self.engine.state), self.spool_dir, f"adapter-r{index:05d}-")
        first_attempt, self.first_attempt = self.first_attempt, 0
        try:
            for attempt in range(first_attempt, self._config.rounds.max_round_attempts):
                available = orchestrator.wait_for_participants(
                    self._awaited, self._config.rounds.heartbeat_timeout_seconds
                )
                self._awaited = frozenset()
                if available is None:
                    return False
                # The registry as the attempt opens (silos and their planned sigma), so that a restarted
                # coordinator re-admits them without planning again. Taken before any task of the attempt
                # is handed out: none of its charges is in it (a restart charges them when it hands them out).
                self.store.save(self._snapshot(failed_attempts=attempt))
                participants = self._choose(available, attempt)
                current = orchestrator.open_round(
                    index,
                    attempt,
                    selection=selection,
                    participants=participants,
                    adapter=adapter,
                    global_norm=adapter_norm(self.engine.state),
                )
                if current is None:
                    return False
                received = orchestrator.close_round(current)
                if orchestrator.end_if_stop_requested() or orchestrator.state.ended or orchestrator.suspended:
                    return False
                if current.secure is not None:
                    decoded = self._unmask(current)
                    if (
                        orchestrator.end_if_stop_requested()
                        or orchestrator.state.ended
                        or orchestrator.suspended
                    ):
                        return False
                    if decoded is not None:
                        self._complete_from_mean(current, decoded)
                        return True
                elif len(received) >= self._config.rounds.min_silos:
                    self._complete(current, received)
                    return True
                else:
                    LOGGER.warning(
                        "round %d attempt %d: %d update(s), fewer than min_silos %d; redoing the round",
                        round_number(index),
                        attempt,
                        len(received),
                        self._config.rounds.min_silos,
                    )
                # The failed attempt's tasks are charged: checkpoint them, so that a restart neither forgets
                # those charges nor hands out the same task id again.
                self.store.save(self._snapshot(failed_attempts=attempt + 1))
        finally:
            adapter.path.unlink(missing_ok=True)
        orchestrator.end(
            RunState.FAILED,
            f"round {round_number(index)} got fewer than {self._config.rounds.min_silos} updates "
            f"in {self._config.rounds.max_round_attempts} attempts",
        )
        return False

    def _choose(self, available: list[SiloRecord], attempt: int) -> list[SiloRecord]:
        """All available silos, or a seeded random fraction of them (at least min_silos), in id order."""
        wanted = max(
            self._config.rounds.min_silos, math.ceil(self._config.rounds.silo_fraction * len(available))
        )
        if wanted >= len(available):
            return available
        seed = derive_seed(self._config.federation.seed, "participants", self.engine.round_index, attempt)
        picked = np.random.default_rng(seed).choice(len(available), size=wanted, replace=False)
        return [available[int(i)] for i in sorted(picked)]

    def _complete(self, current: OpenRound, received: list[ReceivedUpdate]) -> None:
        """Aggregate, score, evaluate, publish, record and checkpoint one round."""
        maybe_crash(CrashPoint.BEFORE_AGGREGATION, current.index)
        outcome = self.engine.complete(current.selection, [item.update for item in received])
        traffic = (
            sum(item.payload_bytes for item in received),
            sum(statistics_bytes(item.update) for item in received),
        )
        self._finish(current, outcome, traffic)

    def _unmask(self, current: OpenRound) -> DecodedMean | None:
        """The weighted mean of a secure round's survivors, from their masked updates and the shares they
        release; None (logged) when the round must be redone: fewer survivors than t or min_silos, too
        few releases, or shares that do not fit. Nothing but the sum of at least t survivors is decoded."""
        secure = current.secure
        if secure is None:
            raise ValueError("the round does not run secure aggregation")
        releases = self.orchestrator.secure_relay.close_unmasking(current)
        maybe_crash(CrashPoint.DURING_UNMASKING, current.index)
        needed = max(secure.context.threshold, self._config.rounds.min_silos)
        why = f"{len(secure.masked)} masked update(s), fewer than {needed} (threshold and min_silos)"
        if len(secure.masked) >= needed:
            try:
                unmasked = unmask(secure.context, secure.keys_seen(), secure.masked, releases)
                weights = {silo: secure.weights[silo] for silo in unmasked.survivors}
                return decode_mean(unmasked, secure.layout, secure.codec, weights)
            except SecureAggregationError as error:
                why = str(error)
        LOGGER.warning(
            "round %d attempt %d: secure aggregation decoded nothing (%s); redoing the round",
            round_number(current.index),
            current.attempt,
            why,
        )
        return None

    def _complete_from_mean(self, current: OpenRound, decoded: DecodedMean) -> None:
        """Advance from a secure round's decoded mean; the score gets each survivor's public weight and
        noise with the pooled statistics (coordinator/secure_round.py), then as `_complete`."""
        secure = current.secure
        if secure is None:
            raise ValueError("the round does not run secure aggregation")
        survivors = sorted(decoded.survivors)
        noise = self.orchestrator.statistics_noise(current, survivors)
        statistics = [
            (
                secure.weights[silo],
                SiloStatistics(
                    layers=decoded.statistics,
                    steps=noise[silo].steps,
                    noise_variance=noise[silo].noise_variance,
                ),
            )
            for silo in survivors
        ]
        mean = SiloUpdate(
            silo_id=SUM_SILO_ID, weight=decoded.total_weight, factors=decoded.factors, head=decoded.head
        )
        outcome = self.engine.complete_from_mean(current.selection, mean, statistics, survivors)
        traffic = (
            len(survivors) * secure.layout.length * WORD_BYTES,
            len(survivors) * STATISTICS_PER_FACTOR * len(secure.layout.statistics) * WORD_BYTES,
        )
        self._finish(current, outcome, traffic)

    def _finish(self, current: OpenRound, outcome: RoundOutcome, traffic: tuple[int, int]) -> None:
        """Evaluate, publish, record and checkpoint an aggregated round."""
        due = self._config.federation.evaluates_after(outcome.round_index)
        evaluation = self.model.evaluate(outcome.state) if due else None
        seconds = self.orchestrator.clock() - current.opened_at
        silos = self.orchestrator.publish_outcome(outcome, evaluation, seconds)
        if evaluation is not None:
            record = self.recorder.record_round(outcome, traffic, evaluation, silos, seconds)
            LOGGER.info(
                "round %d: accuracy %.4f loss %.4f", round_number(record.round), record.accuracy, record.loss
            )
        maybe_crash(CrashPoint.AFTER_AGGREGATION, current.index)
        self.store.save(self._snapshot())
        maybe_crash(CrashPoint.AFTER_CHECKPOINT, current.index)
        if due and self._config.federation.silo_evaluation:
            self._evaluate_at_silos(outcome)

    def _evaluate_at_silos(self, outcome: RoundOutcome) -> None:
        """Ask the available silos to evaluate the new adapter, pool their releases, record and checkpoint
        them; after the round's own checkpoint, so that a restart here never trains the round again."""
        index = outcome.round_index
        adapter = write_payload(state_to_bytes(outcome.state), self.spool_dir, f"adapter-e{index:05d}-")
        try:
            phase = self.orchestrator.evaluations.open(index, adapter)
            if phase is None:
                LOGGER.warning("round %d: no silo available to evaluate the adapter", index)
                return
            federated = self.orchestrator.evaluations.close(phase)
        finally:
            adapter.path.unlink(missing_ok=True)
        self.recorder.record_federated(federated)
        LOGGER.info(
            "round %d: federated accuracy %s loss %s from %d of %d silos",
            index,
            federated.accuracy,
            federated.loss,
            federated.silos_released,
            federated.silos_asked,
        )
        self.store.save(self._snapshot())

    def _snapshot(self, failed_attempts: int = 0) -> CoordinatorSnapshot:
        return self.orchestrator.snapshot(
            self.config_fingerprint,
            self.engine.policy.state_dict(),
            self.recorder.to_json(),
            failed_attempts,
        )
