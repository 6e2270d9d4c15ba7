"""The checked-in protocol code is exactly what proto/generate.py produces from the .proto files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proto_generate", PROTO_ROOT / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_regenerating_the_protocol_code_changes_nothing(tmp_path: Path) -> None:
    generated = _generator().generate(tmp_path)
    checked_in = PROTO_ROOT / "aslora" / "v1"
    assert len(generated) == 12
    for path in generated:
        counterpart = checked_in / path.name
        assert counterpart.exists(), f"{path.name} is generated but not checked in"
        assert path.read_bytes() == counterpart.read_bytes(), f"{path.name} differs: run `make proto`"


def test_the_generated_modules_import_under_the_installed_name() -> None:
    from aslora.v1 import admin_pb2, federation_pb2, transfer_pb2

    assert federation_pb2.DESCRIPTOR.package == "aslora.v1"
    assert admin_pb2.DESCRIPTOR.services_by_name["Admin"].methods_by_name["ExportAdapter"]
    assert transfer_pb2.Chunk(data=b"x").data == b"x"
