"""Keeping secrets out of the logs: API keys in query strings are masked in every log line."""

from __future__ import annotations

import logging
import re
from typing import Final

LOGGERS_WITH_URLS: Final = ("uvicorn.access", "uvicorn.error")
_QUERY_SECRET = re.compile(r"((?:^|[?&])api_key=)[^&\s\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every ``api_key=`` query value replaced by ``***``."""
    return _QUERY_SECRET.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Masks API keys given in URLs, in the message and its arguments (uvicorn's access log
    and its WebSocket lines put the full path and query there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "api_key" in record.msg.lower():
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact(a) if isinstance(a, str) and "api_key" in a.lower() else a
                for a in record.args
            )
        return True


def install_log_redaction() -> None:
    """On uvicorn's loggers (which write request URLs), and on the root logger's handlers, so
    any other record that carried a key in a URL is masked too."""
    filterers: list[logging.Filterer] = [logging.getLogger(n) for n in LOGGERS_WITH_URLS]
    filterers.extend(logging.getLogger().handlers)
    for filterer in filterers:
        if not any(isinstance(f, RedactSecrets) for f in filterer.filters):
            filterer.addFilter(RedactSecrets())
