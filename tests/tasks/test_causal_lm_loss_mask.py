"""Causal-LM instruction tuning learns the response only: prompt tokens carry no loss."""

from __future__ import annotations

from pathlib import Path

import torch

from aslora_core.config import LoraSettings, TaskName
from aslora_core.data import EncodedDataset
from aslora_core.data.instructions import IGNORE_INDEX, InstructionRecords
from aslora_core.tasks import make_task

MAX_LENGTH = 16
PROMPT = "question : what colour is the sky ?"
OTHER_PROMPT = "question : what colour is the leaf ?"
RESPONSE = "answer : blue"
OTHER_RESPONSE = "answer : green"


def _encode(model_dir: Path, prompt: str, response: str) -> EncodedDataset:
    task = make_task(TaskName.CAUSAL_LM)
    return task.encode(InstructionRecords((prompt,), (response,)), model_dir, MAX_LENGTH)


def _gradient(
    model_dir: Path, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    task = make_task(TaskName.CAUSAL_LM)
    model = task.build_model(model_dir, (), LoraSettings(rank=2, alpha=4), seed=0).double()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.05)
    batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    task.loss(model, batch).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_prompt_tokens_are_labelled_ignore_and_response_tokens_are_kept(tiny_gpt2_dir: Path) -> None:
    data = _encode(tiny_gpt2_dir, PROMPT, RESPONSE).tensors
    prompt_length = len(PROMPT.split())
    response_length = len(RESPONSE.split()) + 1  # and EOS
    labels, ids = data["labels"][0], data["input_ids"][0]
    assert (labels[:prompt_length] == IGNORE_INDEX).all()
    end = prompt_length + response_length
    assert torch.equal(labels[prompt_length:end], ids[prompt_length:end])
    assert (labels[end:] == IGNORE_INDEX).all()


def test_prompt_labels_do_not_change_the_gradient_and_response_labels_do(tiny_gpt2_dir: Path) -> None:
    mine = _encode(tiny_gpt2_dir, PROMPT, RESPONSE).tensors
    other_prompt = _encode(tiny_gpt2_dir, OTHER_PROMPT, RESPONSE).tensors
    other_response = _encode(tiny_gpt2_dir, PROMPT, OTHER_RESPONSE).tensors
    ids, mask = mine["input_ids"], mine["attention_mask"]
    assert not torch.equal(mine["input_ids"], other_prompt["input_ids"])
    reference = _gradient(tiny_gpt2_dir, ids, mask, mine["labels"])
    with_other_prompt_labels = _gradient(tiny_gpt2_dir, ids, mask, other_prompt["labels"])
    with_other_response_labels = _gradient(tiny_gpt2_dir, ids, mask, other_response["labels"])
    torch.testing.assert_close(with_other_prompt_labels, reference, rtol=0, atol=0)
    assert not torch.allclose(with_other_response_labels, reference)
