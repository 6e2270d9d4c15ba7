"""Every package folder is installed under its import name (the list in pyproject.toml is complete)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools["package-dir"]
    listed = set(setuptools["packages"])
    roots = {name: REPO / folder for name, folder in mapping.items()}
    roots.update({name: REPO / name for name in ("aslora_core", "aslora_cli", "aslora_rpc")})
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed


def test_installed_import_names_resolve_to_the_repository_folders() -> None:
    import aslora.v1
    import aslora_coordinator
    import aslora_silo

    assert Path(aslora_coordinator.__file__).resolve() == REPO / "coordinator" / "__init__.py"
    assert Path(aslora_silo.__file__).resolve() == REPO / "silo" / "__init__.py"
    assert Path(aslora.v1.__file__).resolve() == REPO / "proto" / "aslora" / "v1" / "__init__.py"
