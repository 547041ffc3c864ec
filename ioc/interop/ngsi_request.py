"""The parameters of an NGSI-LD entity query (GET /ngsi-ld/v1/entities), read and checked.

Offered: ``type`` (one of the published types; required here, since this is not a general context
broker), ``id`` (a comma list), ``q``, ``georel``/``geometry``/``coordinates`` with
``geoproperty=location``, ``attrs``, ``options`` (``normalized``, ``concise``, ``keyValues``),
``limit`` (default 20, at most 1000; 0 only with ``count``), ``offset``, ``count``, and ``local``
and ``lang``, which change nothing here (no federation, no language maps). Any other parameter is
refused by name, so a filter this platform does not apply is never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ioc.errors import InvalidInput
from ioc.interop.ngsi_entities import FORMATS, TYPES, Query, entity_type
from ioc.interop.ngsi_query import parse_geo, parse_q
from ioc.params import one

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 1000
MAX_IDS: Final = 1000
PARAMETERS: Final = (
    "type",
    "id",
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "attrs",
    "options",
    "limit",
    "offset",
    "count",
    "local",
    "lang",
)


def _bad(name: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{name}: {reason}", [{"field": name, "reason": reason}])


@dataclass(frozen=True)
class EntityRequest:
    """A checked query: what to find (None: a type nothing is published as), how to show it."""

    query: Query | None
    form: str
    attrs: tuple[str, ...] | None
    limit: int
    offset: int
    count: bool


def _listed(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _whole(query: Mapping[str, Sequence[str]], name: str, default: int, most: int) -> int:
    text = one(query, name)
    if text is None:
        return default
    if not text.strip().isdigit() or int(text) > most:
        raise _bad(name, f"{text!r} is not a whole number from 0 to {most}")
    return int(text)


def _flag(query: Mapping[str, Sequence[str]], name: str) -> bool:
    text = one(query, name)
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise _bad(name, f"{text!r} is neither true nor false")


def _form(options: list[str]) -> str:
    aliases = {"simplified": "keyValues"}
    chosen = [aliases.get(o, o) for o in options]
    unknown = [o for o in chosen if o not in FORMATS]
    if unknown:
        raise _bad("options", f"{unknown[0]!r} is not offered; use one of: " + ", ".join(FORMATS))
    if len(set(chosen)) > 1:
        raise _bad("options", "give one representation: " + ", ".join(FORMATS))
    return chosen[0] if chosen else "normalized"


def parse_request(query: Mapping[str, Sequence[str]]) -> EntityRequest:
    """GET /entities parameters as a query; raises InvalidInput naming the parameter at fault."""
    unknown = sorted(set(query) - set(PARAMETERS))
    if unknown:
        raise _bad(unknown[0], "is not a parameter offered here; offered: " + ", ".join(PARAMETERS))
    form = _form(_listed(one(query, "options")))
    limit = _whole(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = _whole(query, "offset", 0, 2**31 - 1)
    count = _flag(query, "count")
    _flag(query, "local")
    if limit == 0 and not count:
        raise _bad("limit", "0 is only allowed with count=true")
    geoproperty = one(query, "geoproperty")
    if geoproperty not in (None, "location"):
        raise _bad("geoproperty", f"{geoproperty!r}: the published entities have only location")
    geo = parse_geo(one(query, "georel"), one(query, "geometry"), one(query, "coordinates"))
    types = _listed(one(query, "type"))
    if not types:
        raise _bad("type", "required here; one of: " + ", ".join(TYPES))
    if len(types) > 1:
        raise _bad("type", "one type per query; one of: " + ", ".join(TYPES))
    attrs_given = _listed(one(query, "attrs"))
    attrs = tuple(attrs_given) if attrs_given else None
    ids = _listed(one(query, "id"))
    if len(ids) > MAX_IDS:
        raise _bad("id", f"{len(ids)} ids; at most {MAX_IDS}")
    kind = entity_type(types[0])
    q = one(query, "q")
    if kind is None:  # a type nothing is published as: no entity matches (the spec's answer)
        return EntityRequest(None, form, attrs, limit, offset, count)
    condition = parse_q(q, kind.columns) if q is not None else None
    found = Query(kind, tuple(ids) or None, condition, geo, limit, offset, count)
    return EntityRequest(found, form, attrs, limit, offset, count)
