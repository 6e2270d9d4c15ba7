"""One process-wide lock for building models, because transformers' loading is not thread-safe.

For the length of a `from_pretrained` call, transformers swaps the functions of `torch.nn.init` for its
own (or for no-ops), and puts back what it found when the call ends. Two calls in different threads can
each find the other's swap, and the functions stay swapped for the rest of the process: every later
`reset_parameters` is silently skipped, so a LoRA factor or a head seeded afterwards starts from whatever
memory held (seen in CI: a run in threads no longer matched the same seed run in a fresh process). Every
load and every seeded initialisation in this package holds this lock, so they never interleave.
"""

from __future__ import annotations

import threading

MODEL_CONSTRUCTION_LOCK = threading.RLock()
"""Held around each `from_pretrained` and each seeded initialisation of adapter or head weights;
re-entrant, so a loader may call another."""
