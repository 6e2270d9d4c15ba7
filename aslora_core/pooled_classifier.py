"""A sentence classifier reading the unit-normalised, attention-masked mean of an encoder's hidden states."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MIN_TOKENS = 1.0
"""Guards the mean of a sequence whose attention mask is all zeros."""


class MeanPooledClassifier(nn.Module):
    """`encoder` -> masked mean over tokens -> unit norm -> linear `classifier` without a bias.

    Sentence-embedding checkpoints (all-MiniLM-L6-v2 among them) were trained for exactly this
    representation; their `[CLS]` pooler is untrained for it. The unit norm bounds the head's per-sample
    gradient, which keeps its share of a DP clipping budget predictable. The head has no bias: under label
    skew each silo's local steps drive a bias towards its own majority class and the average swings
    from round to round (docs/results.md); the embeddings' shared component already gives each class an
    offset.
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.config: PretrainedConfig = encoder.config
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels, bias=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        """Logits of every sequence in the batch."""
        return SequenceClassifierOutput(
            logits=self.classifier(self.embed(input_ids, attention_mask, token_type_ids))
        )

    def embed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The unit-normalised masked mean of the encoder's last hidden states: what the head reads."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=MIN_TOKENS)
        return nn.functional.normalize(pooled, dim=-1)
