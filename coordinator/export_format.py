"""What `aslora coordinator export` can write, named apart from the exporter so the operator's client
stays free of torch."""

from __future__ import annotations

from enum import StrEnum

ADAPTER_STATE_FILE = "adapter-state.safetensors"
"""The one file of an `adapter-state` export."""


class ExportFormat(StrEnum):
    """What `aslora coordinator export` writes."""

    PEFT = "peft"
    """A directory that `PeftModel.from_pretrained(base_model, DIR)` loads."""
    ADAPTER_STATE = "adapter-state"
    """One safetensors file in the layout of aslora_core.serialization."""
