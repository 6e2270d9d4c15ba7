"""Why a silo agent cannot take part at all (as opposed to declining one task)."""

from __future__ import annotations


class SiloError(RuntimeError):
    """The silo cannot take part (wrong model, unreadable data or ledger, a coordinator that refuses it)."""
