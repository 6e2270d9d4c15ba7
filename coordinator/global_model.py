"""The coordinator's own base model with LoRA: the initial adapter, evaluation, and PEFT export."""

from __future__ import annotations

import threading
from pathlib import Path

from aslora_coordinator.config import EvaluationSettings
from aslora_core.adapters import export_adapter, read_adapter
from aslora_core.config import LoraSettings
from aslora_core.data import EncodedDataset
from aslora_core.evaluation import Evaluation, evaluate
from aslora_core.factors import AdapterState
from aslora_core.tasks import Task


class GlobalModel:
    """Base model + LoRA built exactly as every silo builds it; one lock, since evaluation and export both
    write the adapter into it."""

    def __init__(
        self,
        task: Task,
        model_path: Path,
        *,
        label_names: tuple[str, ...],
        lora: LoraSettings,
        seed: int,
        evaluation: EvaluationSettings | None,
    ) -> None:
        """Build the task's model, attach LoRA from `seed`, and encode the evaluation set if there is one."""
        self._lock = threading.Lock()
        self.task = task
        self._model = task.build_model(model_path, label_names, lora, seed)
        self.initial_state = read_adapter(self._model)
        self.evaluation = evaluation
        self._eval_data: EncodedDataset | None = None
        if evaluation is not None and evaluation.data_path is not None:
            records = task.load_records(evaluation.data_path, evaluation.fields, label_names or None)
            self._eval_data = task.encode(records, model_path, evaluation.max_length)

    def evaluate(self, state: AdapterState) -> Evaluation | None:
        """Loss and accuracy (and perplexity) of `state` on the evaluation set (None without one)."""
        if self._eval_data is None or self.evaluation is None:
            return None
        with self._lock:
            return evaluate(self._model, state, self._eval_data, self.evaluation.device, task=self.task)

    def export_peft(self, state: AdapterState, out_dir: Path) -> list[Path]:
        """Write `state` as a PEFT adapter directory; return its files."""
        with self._lock:
            export_adapter(self._model, state, out_dir)
        return sorted(path for path in out_dir.iterdir() if path.is_file())
