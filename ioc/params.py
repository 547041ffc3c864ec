"""Reading client input the same way everywhere: one value each, errors that name the field, and
no text PostgreSQL cannot hold (a NUL character, a lone surrogate) or that is longer than any
field of the API needs."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from ioc.errors import InvalidInput

# No query or path value of the API is near this long (a list of 1000 numeric Open311
# request ids is the longest); longer ones are refused before any parser or the database.
MAX_QUERY_VALUE: Final = 16 * 1024


def bad(field: str, reason: str) -> InvalidInput:
    """A 422 naming the field and why, in the details clients read."""
    return InvalidInput(f"{field}: {reason}", [{"field": field, "reason": reason}])


def unstorable(value: str) -> str | None:
    """Why PostgreSQL could not store or compare this text, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character (U+0000), which text cannot hold"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate (U+{ord(value[exc.start]):04X}), which is not text"
    return None


def text(field: str, value: str, max_length: int | None = None) -> str:
    """The value, when it is text the database can hold and not over ``max_length``."""
    reason = unstorable(value)
    if reason is None and max_length is not None and len(value) > max_length:
        reason = f"{len(value)} characters; at most {max_length}"
    if reason is not None:
        raise bad(field, reason)
    return value


def check_tree(value: Any, field: str = "body") -> None:
    """Refuse unstorable text anywhere in decoded JSON (keys included), naming where."""
    if isinstance(value, str):
        text(field, value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{field}.{text(field, str(key))}"
            check_tree(item, name)
    elif isinstance(value, list | tuple):
        for number, item in enumerate(value):
            check_tree(item, f"{field}[{number}]")


def query_of(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Query parameters as name → values, checked as text; a blank value counts as absent
    (``?limit=`` is no limit given), so forms and clients may send empty fields."""
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        text(name, name, MAX_QUERY_VALUE)
        text(name, value, MAX_QUERY_VALUE)
        if value.strip():
            query.setdefault(name, []).append(value)
    return query


def one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The parameter's single value, None when absent or blank; given twice is an error."""
    values = [v for v in query.get(name) or () if v.strip()]
    if len(values) > 1:
        raise bad(name, f"given {len(values)} times; give it once")
    return text(name, values[0], MAX_QUERY_VALUE) if values else None


def page_limit(query: Mapping[str, Sequence[str]], default: int, maximum: int) -> int:
    """The ``limit`` parameter: a whole number from 1 to ``maximum``, ``default`` when absent."""
    given = one(query, "limit")
    if given is None:
        return default
    if not given.strip().isdigit() or not 1 <= int(given) <= maximum:
        raise bad("limit", f"{given!r} is not a whole number from 1 to {maximum}")
    return int(given)


def pack_cursor(values: Sequence[Any]) -> str:
    """An opaque page cursor holding JSON values (where the last page ended)."""
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def unpack_cursor(token: str, field: str = "cursor") -> list[Any]:
    """The values ``pack_cursor`` packed; a token this API did not give out is a 422 on ``field``.
    Callers check the values' shape and raise ``ValueError``/``TypeError`` inside
    ``cursor_error`` to get the same message."""
    try:
        values = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(values, list):
            raise ValueError(token)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise cursor_error(token, field) from None
    return values


def cursor_error(token: str, field: str = "cursor") -> InvalidInput:
    """The one message for a cursor this API did not give out."""
    return bad(
        field,
        f"{token[:40]!r} is not a cursor from this API; pass the 'next' value of the "
        "previous page unchanged",
    )
