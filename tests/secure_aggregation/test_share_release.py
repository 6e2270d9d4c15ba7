"""A silo never releases both kinds of one peer's shares for a task, across requests and restarts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from aslora_rpc.secure_aggregation.errors import SecureAggregationError, ShareReleaseRefusedError
from aslora_rpc.secure_aggregation.messages import UnmaskRequest
from aslora_rpc.secure_aggregation.release_guard import JOURNAL_FILE, ShareKind, ShareReleaseGuard
from aslora_rpc.secure_aggregation.unmasking import unmask
from tests.secure_aggregation.federation import (
    SILOS,
    TASK_ID,
    Pki,
    make_pki,
    round_setup,
    share_and_relay,
    start_round,
    upload,
)

ASKED = "silo-a"
TARGET = "silo-c"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made once for the module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_a_second_request_naming_a_reported_silo_as_dropped_is_refused(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After releasing silo-c's self-mask share, silo-a refuses to release its mask-key share, logs why,
    and its journal is unchanged; repeating the first request is answered again."""
    _, layout, codec, updates = round_setup()
    round_ = start_round(pki, tmp_path)
    share_and_relay(round_)
    upload(round_, layout, codec, updates)
    asked = round_.participants[ASKED]
    everyone = UnmaskRequest(task_id=TASK_ID, survivors=frozenset(SILOS))
    first = asked.release(everyone)
    assert set(first.self_mask) == set(SILOS) and not first.mask_key
    journal = tmp_path / ASKED / JOURNAL_FILE
    recorded = journal.read_bytes()
    without_target = UnmaskRequest(task_id=TASK_ID, survivors=frozenset(SILOS) - {TARGET})
    with caplog.at_level(logging.WARNING), pytest.raises(ShareReleaseRefusedError, match=TARGET):
        asked.release(without_target)
    assert any("would reveal both" in r.getMessage() for r in caplog.records)
    assert journal.read_bytes() == recorded
    assert asked.release(everyone) == first


def test_a_restarted_silo_refuses_the_other_kind_for_the_same_task(pki: Pki, tmp_path: Path) -> None:
    """silo-c dropped in a first attempt (silo-a released its mask-key share); a restarted silo-a in a
    new attempt at the same task, with fresh keys, refuses to release silo-c's self-mask share."""
    _, layout, codec, updates = round_setup()
    first = start_round(pki, tmp_path)
    share_and_relay(first)
    upload(first, layout, codec, updates, dropped={TARGET})
    released = first.participants[ASKED].release(UnmaskRequest(TASK_ID, frozenset(first.masked)))
    assert set(released.mask_key) == {TARGET}
    journal = json.loads((tmp_path / ASKED / JOURNAL_FILE).read_text())
    assert journal["tasks"][TASK_ID][TARGET] == ShareKind.MASK_KEY.value

    retry = start_round(pki, tmp_path)
    share_and_relay(retry)
    upload(retry, layout, codec, updates)
    with pytest.raises(ShareReleaseRefusedError, match=TARGET):
        retry.participants[ASKED].release(UnmaskRequest(TASK_ID, frozenset(SILOS)))
    other_task = start_round(pki, tmp_path, task_id="task-8")
    share_and_relay(other_task)
    upload(other_task, layout, codec, updates)
    assert set(
        other_task.participants[ASKED].release(UnmaskRequest("task-8", frozenset(SILOS))).self_mask
    ) == set(SILOS)


def test_requests_a_silo_cannot_accept_are_refused(pki: Pki, tmp_path: Path) -> None:
    """Before masking; naming the asked silo as dropped; another task; a survivor that never shared."""
    _, layout, codec, updates = round_setup()
    round_ = start_round(pki, tmp_path)
    share_and_relay(round_, dropped_before_sharing={"silo-d"})
    asked = round_.participants[ASKED]
    with pytest.raises(ShareReleaseRefusedError, match="has not masked"):
        asked.release(UnmaskRequest(TASK_ID, frozenset(SILOS)))
    upload(round_, layout, codec, updates)
    refusals = {
        "as dropped": UnmaskRequest(TASK_ID, frozenset({"silo-b", "silo-c"})),
        "request for task": UnmaskRequest("task-9", frozenset(SILOS[:3])),
        "did not share keys": UnmaskRequest(TASK_ID, frozenset(SILOS)),
    }
    for reason, request in refusals.items():
        with pytest.raises(ShareReleaseRefusedError, match=reason):
            asked.release(request)
    assert not (tmp_path / ASKED / JOURNAL_FILE).exists()


def test_an_unreadable_journal_stops_the_silo(tmp_path: Path) -> None:
    """A damaged journal is an error, never an empty one (which would forget what was released)."""
    path = tmp_path / JOURNAL_FILE
    path.write_text("{not json")
    with pytest.raises(SecureAggregationError, match="not a share-release journal"):
        ShareReleaseGuard(path)


def test_a_coordinator_restarted_during_unmasking_completes_with_the_same_request(
    pki: Pki, tmp_path: Path
) -> None:
    """silo-c dropped; the coordinator got two releases, lost them in a crash, and asks every survivor
    again with the same survivor set: each silo answers as before, and the round completes."""
    _, layout, codec, updates = round_setup()
    round_ = start_round(pki, tmp_path)
    share_and_relay(round_)
    upload(round_, layout, codec, updates, dropped={TARGET})
    request = UnmaskRequest(TASK_ID, frozenset(round_.masked))
    lost = [round_.participants[s].release(request) for s in ("silo-a", "silo-b")]
    again = [round_.participants[s].release(request) for s in sorted(round_.masked)]
    assert again[:2] == lost
    unmasked = unmask(round_.context, round_.keys_seen(), round_.masked, again)
    assert unmasked.survivors == frozenset(SILOS) - {TARGET}
