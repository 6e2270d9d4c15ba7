"""The model card of an export states the run, its policy and task, the rounds, each silo's epsilon and
the largest, delta and the base-model fingerprint."""

from __future__ import annotations

from aslora_coordinator.model_card import NO_EPSILON, ModelCardFacts, model_card

FINGERPRINT = "ab" * 32


def _facts(epsilons: dict[str, float]) -> ModelCardFacts:
    return ModelCardFacts(
        run_id="run-7",
        policy="aslora",
        task="sequence-classification",
        labels=("negative", "positive"),
        rounds_completed=4,
        rounds_total=5,
        epsilon_by_silo=epsilons,
        delta=1e-5,
        accountant="rdp",
        base_model_fingerprint=FINGERPRINT,
        lora_rank=8,
        lora_alpha=16,
    )


def test_the_card_states_every_fact_of_the_run() -> None:
    card = model_card(_facts({"hospital-a": 2.5, "hospital-b": 3.25}))
    for fact in (
        "| run id | run-7 |",
        "| policy | aslora |",
        "| task | sequence-classification |",
        "| labels | negative, positive |",
        "| rounds | 4 of 5 |",
        "| epsilon (largest over silos) | 3.25 |",
        "| delta | 1e-05 |",
        f"| base-model fingerprint (SHA-256) | `{FINGERPRINT}` |",
        "| hospital-a | 2.5 |",
        "| hospital-b | 3.25 |",
    ):
        assert fact in card, fact
    assert "More Information Needed" not in card


def test_a_card_before_any_charge_says_so() -> None:
    assert f"| epsilon (largest over silos) | {NO_EPSILON} |" in model_card(_facts({}))
