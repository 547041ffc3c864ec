"""Reading client input the same way everywhere: one value each, errors that name the field, and
no text PostgreSQL cannot hold (a NUL character, a lone surrogate) or that is longer than any
field of the API needs."""

from __future__ import annotations

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
