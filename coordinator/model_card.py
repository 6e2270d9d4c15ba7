"""The model card written into every export: what run made the adapter, on which base model, and the
privacy every silo's records have (README.md, which the Hugging Face tools show)."""

from __future__ import annotations

from dataclasses import dataclass

MODEL_CARD_FILE = "README.md"
NO_EPSILON = "no silo has been charged yet"


@dataclass(frozen=True)
class ModelCardFacts:
    """What the card states about the run that made the adapter."""

    run_id: str
    policy: str
    task: str
    labels: tuple[str, ...]
    rounds_completed: int
    rounds_total: int
    epsilon_by_silo: dict[str, float]
    """Each silo's epsilon as the coordinator recomputes it from its ledger, at `delta`."""
    delta: float
    accountant: str
    base_model_fingerprint: str
    lora_rank: int
    lora_alpha: float

    @property
    def epsilon(self) -> float | None:
        """The largest epsilon of any silo: the guarantee every silo's records have at least."""
        return max(self.epsilon_by_silo.values(), default=None)


def model_card(facts: ModelCardFacts) -> str:
    """The card as Markdown with a YAML header (library and tags, as peft writes them)."""
    epsilon = NO_EPSILON if facts.epsilon is None else f"{facts.epsilon:.4g}"
    silos = "\n".join(f"| {silo} | {value:.4g} |" for silo, value in sorted(facts.epsilon_by_silo.items()))
    labels = ", ".join(facts.labels) if facts.labels else "none (the task has no classes)"
    return f"""---
library_name: peft
tags:
- lora
- differential-privacy
- federated-learning
- aslora
---

# LoRA adapter of run {facts.run_id}

Trained by federated, differentially private fine-tuning (AS-LoRA: each layer trains one factor per
round). Load it with `PeftModel.from_pretrained(base_model, this_folder)`.

| | |
| --- | --- |
| run id | {facts.run_id} |
| policy | {facts.policy} |
| task | {facts.task} |
| labels | {labels} |
| rounds | {facts.rounds_completed} of {facts.rounds_total} |
| epsilon (largest over silos) | {epsilon} |
| delta | {facts.delta:g} |
| accountant | {facts.accountant} |
| LoRA rank, alpha | {facts.lora_rank}, {facts.lora_alpha:g} |
| base-model fingerprint (SHA-256) | `{facts.base_model_fingerprint}` |

The fingerprint covers the base model's tensors and tokenizer files (docs/threat-model.md): load the
adapter on the base model that has it.

## Privacy per silo

Sample-level (epsilon, delta)-DP of each silo's records, recomputed by the coordinator from the silo's
DP-SGD steps at delta {facts.delta:g}:

| silo | epsilon |
| --- | --- |
{silos}
"""
