"""A round opens once enough silos are available, and, while a restarted coordinator's grace lasts, once
the silos of its checkpoint are back: an interrupted attempt goes to the silos it was handed to."""

from __future__ import annotations

import threading
import time

from aslora_coordinator.config import RoundSettings
from aslora_coordinator.registry import SiloRegistry
from aslora_coordinator.run_control import RunControl

HEARTBEAT_TIMEOUT_SECONDS = 60.0
LATE_CALL_SECONDS = 0.3
GRACE_SECONDS = 10.0
SHORT_GRACE_SECONDS = 0.5


def _register_later(control: RunControl, registry: SiloRegistry, silo_id: str) -> threading.Thread:
    """Register `silo_id` after LATE_CALL_SECONDS and wake the waiters, as a silo's call does."""

    def call() -> None:
        time.sleep(LATE_CALL_SECONDS)
        with control.lock:
            registry.register(silo_id, 10, 0.5, 1.0)
            control.lock.notify_all()

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def _setup() -> tuple[RunControl, SiloRegistry]:
    control = RunControl(time.monotonic)
    registry = SiloRegistry(time.monotonic, HEARTBEAT_TIMEOUT_SECONDS)
    registry.register("silo-a", 10, 0.5, 1.0)
    return control, registry


def test_a_round_opens_as_soon_as_min_silos_are_available() -> None:
    control, registry = _setup()
    silos = control.wait_for_participants(registry.available, RoundSettings(min_silos=1), first_round=True)
    assert [silo.silo_id for silo in silos or []] == ["silo-a"]


def test_an_awaited_silo_is_waited_for_within_the_grace() -> None:
    control, registry = _setup()
    late = _register_later(control, registry, "silo-b")
    silos = control.wait_for_participants(
        registry.available,
        RoundSettings(min_silos=1),
        first_round=False,
        awaited={"silo-a", "silo-b"},
        awaited_until=time.monotonic() + GRACE_SECONDS,
    )
    late.join()
    assert [silo.silo_id for silo in silos or []] == ["silo-a", "silo-b"]


def test_a_silo_that_does_not_come_back_is_not_waited_for_past_the_grace() -> None:
    control, registry = _setup()
    start = time.monotonic()
    silos = control.wait_for_participants(
        registry.available,
        RoundSettings(min_silos=1),
        first_round=False,
        awaited={"silo-a", "silo-gone"},
        awaited_until=start + SHORT_GRACE_SECONDS,
    )
    assert [silo.silo_id for silo in silos or []] == ["silo-a"]
    assert time.monotonic() - start >= SHORT_GRACE_SECONDS
