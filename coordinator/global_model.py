"""The coordinator's own base model with LoRA: the initial adapter, evaluation, and PEFT export."""

from __future__ import annotations

import threading
from pathlib import Path

from transformers import AutoTokenizer

from aslora_coordinator.config import EvaluationSettings
from aslora_core.adapters import attach_lora, export_adapter, load_base_classifier, read_adapter
from aslora_core.config import LoraSettings
from aslora_core.data import EncodedDataset, encode, load_table
from aslora_core.evaluation import Evaluation, evaluate
from aslora_core.factors import AdapterState


class GlobalModel:
    """Base model + LoRA built exactly as every silo builds it; one lock, since evaluation and export both
    write the adapter into it."""

    def __init__(
        self,
        model_path: Path,
        label_names: tuple[str, ...],
        lora: LoraSettings,
        seed: int,
        evaluation: EvaluationSettings | None,
    ) -> None:
        """Load the base model, attach LoRA from `seed`, and encode the evaluation set if there is one."""
        self._lock = threading.Lock()
        base = load_base_classifier(model_path, len(label_names), lora.head_pooling)
        self._model = attach_lora(base, lora, seed)
        self.initial_state = read_adapter(self._model)
        self.evaluation = evaluation
        self._eval_data: EncodedDataset | None = None
        if evaluation is not None:
            records = load_table(
                evaluation.data_path,
                text_column=evaluation.text_column,
                text_pair_column=evaluation.text_pair_column,
                label_column=evaluation.label_column,
                label_names=label_names,
            )
            tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
            self._eval_data = encode(records, tokenizer, evaluation.max_length)

    def evaluate(self, state: AdapterState) -> Evaluation | None:
        """Loss and accuracy of `state` on the evaluation set (None without one)."""
        if self._eval_data is None or self.evaluation is None:
            return None
        with self._lock:
            return evaluate(self._model, state, self._eval_data, self.evaluation.device)

    def export_peft(self, state: AdapterState, out_dir: Path) -> list[Path]:
        """Write `state` as a PEFT adapter directory; return its files."""
        with self._lock:
            export_adapter(self._model, state, out_dir)
        return sorted(path for path in out_dir.iterdir() if path.is_file())
