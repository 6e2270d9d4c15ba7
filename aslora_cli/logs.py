"""Logging for the command line: our records at the chosen level, third-party chatter quieted."""

from __future__ import annotations

import logging
import warnings

import transformers

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIETED_WARNINGS = (
    # Opacus' backward hooks on a model whose inputs need no gradient: expected with frozen embeddings.
    (UserWarning, "Full backward hook is firing"),
    (FutureWarning, "`is_gradient_checkpointing` is deprecated"),
)


def configure_logging(level: str) -> None:
    """Send log records to stderr at `level`; silence known, harmless third-party warnings."""
    # force: opacus configures the root logger when it is imported.
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for category, message in QUIETED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
