"""When the database refuses an event's own values, the event is at fault, not the platform.

Validation refuses every value the database is known to refuse; this is the second line: a
write that fails with a data or constraint error is retried without the events at fault
(``ioc.events.coalesce.isolate``), and each of those gets a 422 naming the column where it can.
"""

from __future__ import annotations

import re

import psycopg

from ioc.errors import InvalidInput

_COLUMN = re.compile(r"column (\w+)")


def is_refusal(exc: BaseException) -> bool:
    """True when the error lies in the values written (bad data, a violated CHECK, ...)."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return False  # repeats are the writer's business, and a race is no fault of the data
    return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError))


def column_and_reason(exc: BaseException) -> tuple[str | None, str]:
    """(column, reason) for an error for which ``is_refusal`` holds."""
    column: str | None = None
    message = str(exc).split("\n", 1)[0]
    if isinstance(exc, psycopg.Error):
        diag = exc.diag
        message = diag.message_primary or message
        column = diag.column_name
        if column is None and diag.context:
            found = _COLUMN.search(diag.context)
            column = found.group(1) if found else None
        if column is None and diag.constraint_name:
            message = f"{message} ({diag.constraint_name})"
    return column, f"the database refused this event: {message}"


def as_invalid_input(exc: BaseException) -> InvalidInput:
    column, reason = column_and_reason(exc)
    return InvalidInput(
        f"{column}: {reason}" if column else reason, [{"field": column, "reason": reason}]
    )
