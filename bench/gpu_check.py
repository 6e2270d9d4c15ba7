"""The device checks of docs/benchmarks.md section 3, each bounded in time, in one JSON report written
after every part (a part stopped at its limit, or failing, is reported as such and the next one runs):

(a) MiniLM (the carried weights, SST-2) in float32 and bfloat16: the DP round against bare loops over
    fixed and over Poisson batches (bench/dp_cost.py), logical batch 512, at several physical chunks;
(b) BERT-base shapes, random weights from a config, 128 tokens, bfloat16: DP samples/s;
(c) a Llama-style 1.1B shape, random weights, causal LM at 512 tokens, LoRA r16 on q, k, v, o: DP
    against plain tokens/s and peak memory per clipping engine (hooks in bfloat16, with and without
    gradient checkpointing; ghost in float32, since ghost with bfloat16 is refused);
(d) a 7B Llama shape built directly on the device in bfloat16 (no float32 copy anywhere): one DP round,
    its tokens/s and peak memory.

`--shapes tiny` runs the same code with tiny shapes and synthetic records on the CPU in seconds (a test
does, so the script cannot rot); `bash bench/gpu_check.sh` runs the full shapes on a device machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import transformers
from peft import PeftModel
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from aslora_core.adapters import attach_lora, load_base_classifier
from aslora_core.config import ClippingEngine, LoraSettings, Precision
from aslora_core.data import EncodedDataset
from aslora_core.data.encoding import LABELS_KEY
from aslora_core.precision import base_dtype
from aslora_core.tasks import Task
from aslora_core.tasks.causal_lm import CAUSAL_LM_TYPE, CausalLMTask
from aslora_core.tasks.sequence_classification import SequenceClassificationTask
from bench.dp_cost import Workload, compare, dp_round, side, warm_up
from bench.dp_throughput import minilm_data

Report = dict[str, Any]
RATIO_TARGET = 1.1
"""DP time at most 1.1x the bare loop's (issue 22)."""
BERT_BASE_SAMPLES_TARGET = 6000.0
"""DP samples/s of BERT-base shapes at 128 tokens in bfloat16 on one H200 (issue 22)."""
CLASSES = 2
LLAMA_LORA = LoraSettings(rank=16, alpha=32)
"""Rank 16 on the Llama defaults q, k, v and o."""
DATA_SEED = 0
RECORDS_PER_BATCH = 4
"""Synthetic sets hold this many logical batches of records (a sampling rate of 1/4)."""


@dataclass(frozen=True)
class PartShape:
    """One part's model shape and round: a config's fields, tokens per record, batch, chunks, steps."""

    config: dict[str, Any]
    tokens: int
    batch: int
    physical: tuple[int, ...]
    steps: int
    limit_seconds: int


@dataclass(frozen=True)
class Shapes:
    """The four parts' shapes; `minilm_carried` says whether (a) reads the carried MiniLM and SST-2."""

    minilm: PartShape
    bert_base: PartShape
    llama_1b: PartShape
    llama_7b: PartShape
    minilm_carried: bool = True


TINY_BERT = {
    "vocab_size": 128,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}
TINY_LLAMA = {
    "vocab_size": 128,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}
TINY_TOKENS, TINY_BATCH, TINY_CHUNK, TINY_STEPS, TINY_LIMIT_SECONDS = 16, 8, 4, 2, 120


def tiny(config: dict[str, Any]) -> PartShape:
    """A round of a tiny model: two steps of 8 records of 16 tokens in chunks of 4."""
    return PartShape(
        config=config,
        tokens=TINY_TOKENS,
        batch=TINY_BATCH,
        physical=(TINY_CHUNK,),
        steps=TINY_STEPS,
        limit_seconds=TINY_LIMIT_SECONDS,
    )


FULL = Shapes(
    minilm=PartShape(config={}, tokens=48, batch=512, physical=(128, 512, 1024), steps=3, limit_seconds=70),
    bert_base=PartShape(
        # bert-base-uncased's shape
        config={
            "vocab_size": 30522,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 512,
        },
        tokens=128,
        batch=512,
        physical=(256, 640),
        steps=3,
        limit_seconds=55,
    ),
    llama_1b=PartShape(
        # TinyLlama-1.1B's shape
        config={
            "vocab_size": 32000,
            "hidden_size": 2048,
            "num_hidden_layers": 22,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "intermediate_size": 5632,
            "max_position_embeddings": 2048,
        },
        tokens=512,
        batch=64,
        physical=(16,),
        steps=2,
        limit_seconds=120,
    ),
    llama_7b=PartShape(
        # Llama-2-7B's shape
        config={
            "vocab_size": 32000,
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "intermediate_size": 11008,
            "max_position_embeddings": 4096,
        },
        tokens=512,
        batch=16,
        physical=(8,),
        steps=2,
        limit_seconds=85,
    ),
)
TINY = Shapes(
    minilm=tiny(TINY_BERT),
    bert_base=tiny(TINY_BERT),
    llama_1b=tiny(TINY_LLAMA),
    llama_7b=tiny(TINY_LLAMA),
    minilm_carried=False,
)
SHAPES = {"full": FULL, "tiny": TINY}
ENGINES_1B = (
    (ClippingEngine.HOOKS, Precision.BFLOAT16, False),
    (ClippingEngine.HOOKS, Precision.BFLOAT16, True),
    (ClippingEngine.GHOST, Precision.FLOAT32, False),
)
"""(c)'s engines: ghost clipping runs in float32 only (ghost with bfloat16 is refused)."""


class PartTimeLimitError(Exception):
    """A part reached its time limit."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise PartTimeLimitError in the block after `seconds` (between Python operations)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise PartTimeLimitError

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def built_on(device: str, dtype: torch.dtype) -> Iterator[None]:
    """New tensors are created on `device` in `dtype`: a model is initialised where and as it will run."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def random_classifier(config: dict[str, Any], device: str, precision: Precision) -> PeftModel:
    """A BERT classifier of `config`'s shape with random weights, built on `device`, LoRA attached."""
    bert = BertConfig(**config)
    bert.num_labels = CLASSES
    with built_on(device, base_dtype(precision)):
        base = BertForSequenceClassification(bert)
    return attach_lora(base, LoraSettings(), seed=0)


def random_causal_lm(config: dict[str, Any], device: str, precision: Precision) -> PeftModel:
    """A Llama of `config`'s shape with random weights, built on `device` in `precision`'s dtype, with
    LoRA r16 on q, k, v and o."""
    llama = LlamaConfig(**config)
    with built_on(device, base_dtype(precision)):
        base = LlamaForCausalLM(llama)
    return attach_lora(base, LLAMA_LORA, seed=0, head_modules=(), task_type=CAUSAL_LM_TYPE)


def token_records(shape: PartShape, *, classes: int | None) -> EncodedDataset:
    """Random full-length token records: class labels, or (classes None) next-token labels on every
    position."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    count = RECORDS_PER_BATCH * shape.batch
    ids = torch.randint(int(shape.config["vocab_size"]), (count, shape.tokens), generator=generator)
    labels = ids.clone() if classes is None else torch.randint(classes, (count,), generator=generator)
    return EncodedDataset({"input_ids": ids, "attention_mask": torch.ones_like(ids), LABELS_KEY: labels})


def workload(
    model: PeftModel,
    data: EncodedDataset,
    task: Task,
    shape: PartShape,
    *,
    device: str,
    physical: int,
    precision: Precision,
    engine: ClippingEngine = ClippingEngine.HOOKS,
    checkpointing: bool = False,
) -> Workload:
    """The part's round on `model` and `data`."""
    return Workload(
        model=model,
        data=data,
        task=task,
        batch=shape.batch,
        physical=physical,
        steps=shape.steps,
        device=device,
        precision=precision,
        engine=engine,
        checkpointing=checkpointing,
    )


def release(*models: torch.nn.Module) -> None:
    """Free the part's models before the next one is built."""
    for model in models:
        model.to("meta")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def part_minilm(shapes: Shapes, device: str, carry: Path) -> Report:
    """(a): MiniLM in float32 and bfloat16, DP against both bare loops, per physical chunk."""
    shape = shapes.minilm
    if shapes.minilm_carried:
        data = minilm_data(carry / "model", carry / "sst2" / "train.tsv")
    else:
        data = token_records(shape, classes=CLASSES)
    rows = []
    for precision in Precision:
        if shapes.minilm_carried:
            base = load_base_classifier(str(carry / "model"), CLASSES, dtype=base_dtype(precision))
            model = attach_lora(base.to(device), LoraSettings(), seed=0)
        else:
            model = random_classifier(shape.config, device, precision)
        task = SequenceClassificationTask()
        for physical in shape.physical:
            rows.append(
                compare(
                    workload(model, data, task, shape, device=device, physical=physical, precision=precision)
                )
            )
        release(model)
    at_target = [r for r in rows if r["physical_chunk"] >= shape.batch]
    return {
        "rows": rows,
        "target": f"DP at most {RATIO_TARGET}x the Poisson loop with a chunk holding the whole batch",
        "target_met": bool(at_target) and all(r["dp_over_plain_poisson"] <= RATIO_TARGET for r in at_target),
    }


def part_bert_base(shapes: Shapes, device: str) -> Report:
    """(b): BERT-base shapes at 128 tokens in bfloat16, DP samples/s (and both bare loops)."""
    shape = shapes.bert_base
    model = random_classifier(shape.config, device, Precision.BFLOAT16)
    data = token_records(shape, classes=CLASSES)
    task = SequenceClassificationTask()
    rows = [
        compare(
            workload(model, data, task, shape, device=device, physical=physical, precision=Precision.BFLOAT16)
        )
        for physical in shape.physical
    ]
    release(model)
    best = max(row["dp_round"]["samples_per_second"] for row in rows)
    return {
        "rows": rows,
        "best_dp_samples_per_second": best,
        "target": f"at least {BERT_BASE_SAMPLES_TARGET:.0f} DP samples/s",
        "target_met": best >= BERT_BASE_SAMPLES_TARGET,
    }


def part_llama_1b(shapes: Shapes, device: str) -> Report:
    """(c): the 1.1B shape per clipping engine: DP against both bare loops in tokens/s, peak memory."""
    shape = shapes.llama_1b
    data = token_records(shape, classes=None)
    rows = []
    for engine, precision, checkpointing in ENGINES_1B:
        model = random_causal_lm(shape.config, device, precision)
        work = workload(
            model,
            data,
            CausalLMTask(),
            shape,
            device=device,
            physical=shape.physical[0],
            precision=precision,
            engine=engine,
            checkpointing=checkpointing,
        )
        rows.append(compare(work))
        release(model)
    bfloat16 = [r for r in rows if r["precision"] == Precision.BFLOAT16.value]
    return {
        "rows": rows,
        "target": f"DP at most {RATIO_TARGET}x the Poisson loop in bfloat16 (hooks)",
        "target_met": all(r["dp_over_plain_poisson"] <= RATIO_TARGET for r in bfloat16),
    }


def part_llama_7b(shapes: Shapes, device: str) -> Report:
    """(d): the 7B shape built in bfloat16 on the device: one DP round's tokens/s and peak memory."""
    shape = shapes.llama_7b
    model = random_causal_lm(shape.config, device, Precision.BFLOAT16)
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    data = token_records(shape, classes=None)
    work = workload(
        model,
        data,
        CausalLMTask(),
        shape,
        device=device,
        physical=shape.physical[0],
        precision=Precision.BFLOAT16,
    )
    warm_up(work)
    measured = dp_round(work)
    release(model)
    return {
        "parameter_dtypes": dtypes,
        "logical_batch": shape.batch,
        "physical_chunk": shape.physical[0],
        "steps": shape.steps,
        "dp_round": side(measured, work.mean_tokens),
    }


def run_part(name: str, limit_seconds: int, run: Callable[[], Report]) -> Report:
    """`run` within its time limit; its report, or how it stopped, with its wall time."""
    started = time.perf_counter()
    try:
        with time_limit(limit_seconds):
            report = {"status": "ok", **run()}
    except PartTimeLimitError:
        report = {"status": f"stopped at its limit of {limit_seconds} s"}
    except Exception as error:  # a failing part is reported and the next one still runs
        traceback.print_exc()
        report = {"status": f"failed: {type(error).__name__}: {error}"}
    report["limit_seconds"] = limit_seconds
    report["wall_seconds"] = time.perf_counter() - started
    print(f"{name}: {report['status']} in {report['wall_seconds']:.1f} s", flush=True)
    return report


def setup(device: str, shapes: str) -> Report:
    """Where and with what the report was made."""
    where = torch.device(device)
    threads = f"{torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(where) if where.type == "cuda" else threads
    return {
        "device": name,
        "shapes": shapes,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "noise": "secure (the silo's)",
    }


def main() -> None:
    """Run the parts in order, rewriting the report after each."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="full")
    parser.add_argument("--carry", type=Path, default=Path(".gpu-carry"), help="bench/prepare_gpu_carry.sh's")
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shapes = SHAPES[args.shapes]
    if shapes is TINY:
        # Tiny matrices gain nothing from threads and lose much to their synchronisation on a busy machine.
        torch.set_num_threads(1)
    parts: list[tuple[str, int, Callable[[], Report]]] = [
        ("a_minilm", shapes.minilm.limit_seconds, lambda: part_minilm(shapes, args.device, args.carry)),
        ("b_bert_base", shapes.bert_base.limit_seconds, lambda: part_bert_base(shapes, args.device)),
        ("c_llama_1b", shapes.llama_1b.limit_seconds, lambda: part_llama_1b(shapes, args.device)),
        ("d_llama_7b", shapes.llama_7b.limit_seconds, lambda: part_llama_7b(shapes, args.device)),
    ]
    report: Report = {"setup": setup(args.device, args.shapes), "parts": {}}
    for name, limit, run in parts:
        report["parts"][name] = run_part(name, limit, run)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
