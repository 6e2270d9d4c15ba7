"""Generate the Python code and type stubs of the aslora.v1 protocol from the .proto files.

Run from anywhere with the project's interpreter: `.venv/bin/python proto/generate.py`. The output is
checked in next to the .proto files; tests/grpc/test_generated_code.py regenerates it into a temporary
folder and fails when anything differs, so edit the .proto files and rerun this script, never the output.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = Path("aslora") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
PLUGINS = ("protoc-gen-mypy", "protoc-gen-mypy_grpc")


class GenerationError(RuntimeError):
    """protoc failed or a plugin is missing."""


def proto_files() -> list[Path]:
    """The protocol's .proto files, relative to the proto root, in a fixed order."""
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def _plugin(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        raise GenerationError(f"{name} not found: install mypy-protobuf in this environment")
    return found


def generate(out_dir: Path) -> list[Path]:
    """Write *_pb2.py, *_pb2_grpc.py and their .pyi stubs under `out_dir`/aslora/v1; return them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--plugin=protoc-gen-mypy={_plugin(PLUGINS[0])}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin(PLUGINS[1])}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(path.relative_to(PROTO_ROOT)) for path in proto_files()),
    ]
    if protoc.main(arguments) != 0:
        raise GenerationError("protoc failed; see its messages above")
    return sorted(
        path for path in (out_dir / PACKAGE_DIR).iterdir() if path.name.endswith(GENERATED_SUFFIXES)
    )


def main() -> None:
    """Command line: regenerate in place, or into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT, help="root folder of the output")
    written = generate(parser.parse_args().out)
    print(f"wrote {len(written)} files")


if __name__ == "__main__":
    main()
