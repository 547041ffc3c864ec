"""Reading query parameters the same way everywhere: one value each, errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ioc.errors import InvalidInput


def bad(field: str, reason: str) -> InvalidInput:
    """A 422 naming the field and why, in the details clients read."""
    return InvalidInput(f"{field}: {reason}", [{"field": field, "reason": reason}])


def one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The parameter's single value, None when absent; given twice is an error."""
    values = query.get(name) or ()
    if len(values) > 1:
        raise bad(name, f"given {len(values)} times; give it once")
    return values[0] if values else None
