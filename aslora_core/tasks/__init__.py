"""Fine-tuning tasks: sequence classification, causal-LM instruction tuning, image classification."""

from aslora_core.tasks.base import Batch, BatchTerms, Task, TaskError
from aslora_core.tasks.registry import TASK_NAMES, make_task

__all__ = ["TASK_NAMES", "Batch", "BatchTerms", "Task", "TaskError", "make_task"]
