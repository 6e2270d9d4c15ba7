"""How rounds are numbered for people: from 1, in every log line, progress display and admin view.

Round indices stay 0-based in code, on the wire and in the results file; a person reads `round 1` for
index 0, so that `round 3 of 3` is the last one, as the status view's `rounds 3 / 3` says.
"""

from __future__ import annotations


def round_number(index: int) -> int:
    """The 1-based number shown to people for the round of 0-based `index`."""
    return index + 1
