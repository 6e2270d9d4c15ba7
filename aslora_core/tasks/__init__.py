"""Fine-tuning tasks: sequence classification, causal-LM instruction tuning, image classification."""

from aslora_core.tasks.base import Batch, BatchTerms, ExampleTerms, Task, TaskError
from aslora_core.tasks.registry import TASK_NAMES, make_task

__all__ = ["TASK_NAMES", "Batch", "BatchTerms", "ExampleTerms", "Task", "TaskError", "make_task"]
