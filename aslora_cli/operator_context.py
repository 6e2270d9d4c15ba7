"""The operator's context file: named coordinators and the TLS files to reach each, one of them current,
so that an operator command needs no connection options (in the manner of a kubeconfig).

    current = "lab"
    [contexts.lab]
    address = "coordinator.example.org:7443"
    ca_cert = "pki/ca.crt"          # relative to this file's folder
    cert = "pki/alice.crt"
    key = "pki/alice.key"
    tls_server_name = "coordinator"  # optional

The file is `$ASLORA_CONTEXT`, else `$XDG_CONFIG_HOME/aslora/context.toml` (`~/.config/aslora/...`).
A command's options override the environment variables, which override the context.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aslora_core.config import ConfigError
from aslora_rpc.config_file import Table

CONTEXT_ENV = "ASLORA_CONTEXT"
"""The environment variable naming the context file (it must then exist)."""
CONFIG_HOME_ENV = "XDG_CONFIG_HOME"
DEFAULT_CONFIG_HOME = Path("~/.config")
CONTEXT_FILE = Path("aslora") / "context.toml"


@dataclass(frozen=True)
class OperatorContext:
    """One named coordinator: its address and the operator's TLS files for it (each may be left out)."""

    name: str
    address: str | None = None
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    tls_server_name: str | None = None


def context_file() -> tuple[Path, bool]:
    """The context file's path, and whether it must exist (it must when the environment names it)."""
    named = os.environ.get(CONTEXT_ENV)
    if named:
        return Path(named), True
    home = os.environ.get(CONFIG_HOME_ENV) or str(DEFAULT_CONFIG_HOME.expanduser())
    return Path(home) / CONTEXT_FILE, False


def load_context(name: str | None = None) -> OperatorContext | None:
    """The context called `name` (default: the file's `current`); None when there is no context file and
    none was asked for by name. ConfigError for a named context that is not in the file."""
    path, required = context_file()
    if not path.exists() and not required and name is None:
        return None
    top = Table.load(path)
    contexts = top.table("contexts")
    known = contexts.names()
    current = top.optional_string("current")
    chosen = name or current
    if chosen is None:
        raise ConfigError(f"{path}: no `current` context; set one, or choose one with --context")
    if chosen not in known:
        raise ConfigError(f"{path}: no context {chosen!r}; the file has {', '.join(known) or 'none'}")
    table = contexts.table(chosen)
    context = OperatorContext(
        name=chosen,
        address=table.optional_string("address"),
        ca_cert=table.optional_path("ca_cert"),
        cert=table.optional_path("cert"),
        key=table.optional_path("key"),
        tls_server_name=table.optional_string("tls_server_name"),
    )
    table.finish()
    top.finish()
    return context
