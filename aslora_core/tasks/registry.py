"""The tasks by name."""

from __future__ import annotations

from aslora_core.config import TaskName
from aslora_core.tasks.base import Task
from aslora_core.tasks.causal_lm import CausalLMTask
from aslora_core.tasks.image_classification import ImageClassificationTask
from aslora_core.tasks.sequence_classification import SequenceClassificationTask

_TASKS: dict[TaskName, type[Task]] = {
    TaskName.SEQUENCE_CLASSIFICATION: SequenceClassificationTask,
    TaskName.CAUSAL_LM: CausalLMTask,
    TaskName.IMAGE_CLASSIFICATION: ImageClassificationTask,
}
TASK_NAMES = tuple(name.value for name in TaskName)


def make_task(name: TaskName) -> Task:
    """The task called `name`."""
    return _TASKS[name]()
