"""Registering this silo in a run whose plan it accepted (again after a coordinator restart or a failed
round), and declining a run it does not take part in."""

from __future__ import annotations

import logging

import grpc

from aslora_rpc.error_codes import ErrorCode
from aslora_rpc.errors import error_code_of
from aslora_rpc.messages import Enrollment, Registration, RunDecline, RunPlan
from aslora_rpc.protocol import PROTOCOL_VERSION, is_compatible
from aslora_silo.client import CoordinatorClient
from aslora_silo.errors import SiloError

LOGGER = logging.getLogger(__name__)
REFUSALS = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT})
"""Registration errors that retrying cannot fix."""


class Registrar:
    """Registers this silo (its name, base model fingerprint and dataset size) in the runs it accepted."""

    def __init__(self, name: str, fingerprint: str, dataset_size: int) -> None:
        self.name = name
        self.fingerprint = fingerprint
        self.dataset_size = dataset_size

    def register(self, client: CoordinatorClient, plan: RunPlan) -> Enrollment:
        """Register in the run whose plan this silo checked; the coordinator must enroll it under that very
        plan."""
        registration = Registration(
            PROTOCOL_VERSION, self.name, self.fingerprint, self.dataset_size, plan.run_id
        )
        try:
            enrollment = client.register(registration)
        except grpc.RpcError as error:
            if (
                isinstance(error, grpc.Call)
                and error.code() in REFUSALS
                and error_code_of(error) is not ErrorCode.RUN_CHANGED
            ):
                raise SiloError(f"the coordinator refused this silo: {error.details()}") from error
            raise
        if not is_compatible(enrollment.protocol_version):
            raise SiloError(
                f"the coordinator speaks protocol {enrollment.protocol_version}, this silo {PROTOCOL_VERSION}"
            )
        if enrollment.plan != plan:
            # Checked before registering: a run enrolling this silo under another plan is not the run it
            # accepted (its privacy or its sampling could differ from what was checked).
            raise SiloError(f"the coordinator enrolled this silo in run {plan.run_id} under another plan")
        LOGGER.info("silo %s registered in run %s", enrollment.silo_id, plan.run_id)
        return enrollment

    def register_again(self, client: CoordinatorClient, enrollment: Enrollment) -> Enrollment:
        """The coordinator restarted and lost this silo's registration: register again, in the same run
        (a resumed run keeps its id, and its model, labels, LoRA, privacy and training settings)."""
        LOGGER.warning(
            "silo %s: the coordinator does not know this silo (restarted?); registering again",
            enrollment.silo_id,
        )
        try:
            return self.register(client, enrollment.plan)
        except SiloError as error:
            raise SiloError(f"on registering again after a coordinator restart: {error}") from error

    def decline(self, client: CoordinatorClient, plan: RunPlan, reason: str, epsilon_spent: float) -> None:
        """Tell the coordinator this silo does not take part in the run, and why (the operator sees it)."""
        try:
            client.decline_run(RunDecline(self.name, plan.run_id, reason, epsilon_spent))
        except grpc.RpcError as error:
            if error_code_of(error) is not ErrorCode.RUN_CHANGED:
                raise
