"""Opacus' PRV accountant against Google's dp-accounting PLD, and below RDP, at settings of the learning
studies (`bench/accountant_grid.py` runs the whole grid)."""

from __future__ import annotations

import pytest

from aslora_core.config import AccountantKind
from aslora_core.privacy import PrivacyEvent, epsilon_spent
from bench.accountant_grid import Comparison, Setting, pld_epsilon

DELTA = 1e-5
STUDY_POINTS = [
    # (q, steps, RDP's sigma for the target): SST-2 seed 0's smallest silo at epsilon 3 (4,992 records,
    # batch 512), seed 1's smallest (543 records) at epsilon 1, the 30-round horizon's largest silo
    # (39,460 records) at epsilon 3, and BBC News seed 2's smallest silo (424 articles, batch 192).
    (512 / 4992, 18, 1.1841, 3.0),
    (512 / 543, 18, 16.25, 1.0),
    (512 / 39460, 90, 0.7446, 3.0),
    (192 / 424, 18, 3.1494, 3.0),
]


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
@pytest.mark.parametrize(("q", "steps", "sigma", "target"), STUDY_POINTS)
def test_prv_is_within_its_stated_error_of_pld_and_below_rdp(
    q: float, steps: int, sigma: float, target: float
) -> None:
    setting = Setting(q, steps, target, DELTA)
    events = [PrivacyEvent(sigma, q, steps)]
    rdp = epsilon_spent(events, DELTA, AccountantKind.RDP)
    comparison = Comparison(
        setting=setting,
        rdp_sigma=sigma,
        rdp_epsilon=rdp,
        prv_epsilon=epsilon_spent(events, DELTA, AccountantKind.PRV),
        pld_epsilon=pld_epsilon(setting, sigma),
        prv_sigma=sigma,
    )
    assert rdp == pytest.approx(target, abs=0.01)
    assert comparison.within_error, comparison
    assert comparison.prv_epsilon < rdp
