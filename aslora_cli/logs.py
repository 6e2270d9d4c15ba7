"""Logging for the command line: our records at the chosen level, third-party chatter quieted.

`--log-format text` (the default) writes one readable line per record; `--log-format json` writes one
JSON object per line (`time` in UTC ISO 8601, `level`, `logger`, `message`, and `exception` when there
is one), for log collectors that parse structured logs. transformers is quieted only by the commands
that load a model (`quiet_transformers`), so that the others never import it.
"""

from __future__ import annotations

import datetime
import json
import logging
import warnings
from enum import StrEnum

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIETED_WARNINGS = (
    # Opacus' backward hooks on a model whose inputs need no gradient: expected with frozen embeddings.
    (UserWarning, "Full backward hook is firing"),
    (FutureWarning, "`is_gradient_checkpointing` is deprecated"),
)


class LogFormat(StrEnum):
    """How log records are written to stderr."""

    TEXT = "text"
    JSON = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON: time, level, logger, message (arguments applied), exception if any."""
        document: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def configure_logging(level: str, log_format: LogFormat = LogFormat.TEXT) -> None:
    """Send log records to stderr at `level` in `log_format`; silence known, harmless third-party warnings."""
    # force: replaces a root logger configured earlier, as opacus does when it is imported.
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    if log_format is LogFormat.JSON:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    for category, message in QUIETED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def quiet_transformers() -> None:
    """Keep transformers to errors and without progress bars (imports it: for commands that load a model)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
