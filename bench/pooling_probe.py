"""Which frozen MiniLM representation separates SST-2: the [CLS] pooler output or masked mean pooling.

A non-private linear probe (scikit-learn logistic regression) on frozen features of a seeded subset of
SST-2's training records, scored on the dev set; no LoRA, no DP. It measures what the classification
head can read before any adaptation.

    python -m bench.pooling_probe --records 3000
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, AutoTokenizer

from aslora_core.adapters import default_model_path
from aslora_core.data import load_table

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
MAX_LENGTH = 64
BATCH = 128
PROBE_ITERATIONS = 2000
DEFAULT_RECORDS = 3000
Features = npt.NDArray[np.float32]


def features(texts: Sequence[str], model_path: Path) -> tuple[Features, Features]:
    """(pooler output, masked mean of the last hidden states) for every text."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_path), local_files_only=True).eval()
    pooled, means = [], []
    with torch.no_grad():
        for start in range(0, len(texts), BATCH):
            batch = tokenizer(
                list(texts[start : start + BATCH]),
                padding=True,
                truncation=True,
                max_length=MAX_LENGTH,
                return_tensors="pt",
            )
            output = model(**batch)
            mask = batch["attention_mask"].unsqueeze(-1).float()
            means.append((output.last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1))
            pooled.append(output.pooler_output)
    return torch.cat(pooled).numpy(), torch.cat(means).numpy()


def main() -> None:
    """Fit one probe per representation and print their dev accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    train = load_table(SST2 / "train.tsv", text_column="sentence", label_column="label")
    dev = load_table(SST2 / "dev.tsv", text_column="sentence", label_column="label")
    chosen = np.random.default_rng(arguments.seed).choice(len(train), arguments.records, replace=False)
    subset = train.subset(chosen)
    model_path = default_model_path()
    train_pooled, train_mean = features([e.text for e in subset.examples], model_path)
    dev_pooled, dev_mean = features([e.text for e in dev.examples], model_path)
    train_labels = np.array([e.label for e in subset.examples])
    dev_labels = np.array([e.label for e in dev.examples])
    for name, fit_on, score_on in (
        ("[CLS] pooler output", train_pooled, dev_pooled),
        ("masked mean pooling", train_mean, dev_mean),
    ):
        probe = LogisticRegression(max_iter=PROBE_ITERATIONS).fit(fit_on, train_labels)
        print(f"{name:<22} dev accuracy {probe.score(score_on, dev_labels):.4f}")


if __name__ == "__main__":
    main()
