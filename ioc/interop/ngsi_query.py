"""NGSI-LD query filters as SQL: the ``q`` language (ETSI GS CIM 009, 4.9) and geo-queries (4.10).

Each published entity type declares its attributes as SQL expressions over its own columns; a
filter is composed from those and the caller's values go in as parameters, never as SQL text.

``q``: terms joined by ``;`` (and) and ``|`` (or), grouped with parentheses. A term is an attribute
alone (it exists), or an attribute, an operator (``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``,
``~=``, ``!~=``) and a value: a number, a quoted string, a date-time, ``true``/``false``, a range
``min..max`` or a list ``a,b,c`` (with ``==`` and ``!=``). An attribute the type does not have
matches nothing, as the specification says; a value of the wrong kind for the attribute is an
error. A regular expression holding ``;``, ``|`` or ``)`` is given quoted.

Geo-queries: ``georel`` ``near;maxDistance==<metres>`` or ``near;minDistance==<metres>`` with a
Point; ``within``, ``intersects`` or ``disjoint`` with a Polygon or MultiPolygon; ``equals`` with
a Point. Entities are points (WGS 84 longitude, latitude); distances are great-circle metres, and
polygons are tested in longitude-latitude as the routing does (a point on the edge is inside).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import shapely
from psycopg import sql
from shapely.geometry import MultiPolygon, Polygon, shape

from ioc.errors import InvalidInput

Kind = Literal["number", "text", "datetime", "bool"]
EARTH_RADIUS_M: Final = 6_371_008.8
MAX_TERMS: Final = 64
MAX_DEPTH: Final = 8
MAX_VERTICES: Final = 10_000
_OPERATORS: Final = ("!~=", "~=", "==", "!=", ">=", "<=", ">", "<")
_SQL_OPERATORS: Final = {"==": "=", "!=": "<>", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}
_ATTRIBUTE = re.compile(r"[A-Za-z0-9_@:#/.\[\]\-]+")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s\"]+")
_DISTANCE = re.compile(r"near;(maxDistance|minDistance)==(\d+(?:\.\d+)?)")


class InvalidRequest(InvalidInput):
    """A query that cannot be read at all (NGSI-LD's InvalidRequest, rather than bad data)."""

    code = "invalid_request"


def _bad(name: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{name}: {reason}", [{"field": name, "reason": reason}])


def _unreadable(name: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"{name}: {reason}", [{"field": name, "reason": reason}])


@dataclass(frozen=True)
class Column:
    """One attribute of a published type: its SQL expression and the kind of its values."""

    expr: sql.Composable
    kind: Kind


# --- q ---------------------------------------------------------------------------------------


class _Reader:
    """A cursor over the q text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.terms = 0

    def peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def fail(self, reason: str) -> InvalidRequest:
        return _unreadable("q", f"{reason} at character {self.at + 1} of {self.text!r}")


def parse_q(text: str, columns: dict[str, Column]) -> sql.Composable:
    """The SQL condition a q expression stands for; raises InvalidInput naming what is wrong."""
    reader = _Reader(text)
    condition = _expression(reader, columns, 0)
    if reader.at != len(text):
        raise reader.fail(f"unexpected {reader.peek()!r}")
    return condition


def _expression(reader: _Reader, columns: dict[str, Column], depth: int) -> sql.Composable:
    """Terms joined by ; and |, where ; binds tighter (a;b|c is (a and b) or c)."""
    alternatives: list[sql.Composable] = []
    conjunction = [_factor(reader, columns, depth)]
    while reader.peek() in (";", "|"):
        joiner = reader.peek()
        reader.at += 1
        if joiner == "|":
            alternatives.append(_and(conjunction))
            conjunction = []
        conjunction.append(_factor(reader, columns, depth))
    alternatives.append(_and(conjunction))
    if len(alternatives) == 1:
        return alternatives[0]
    return sql.SQL("({})").format(sql.SQL(" OR ").join(alternatives))


def _and(parts: list[sql.Composable]) -> sql.Composable:
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))


def _factor(reader: _Reader, columns: dict[str, Column], depth: int) -> sql.Composable:
    if reader.peek() == "(":
        if depth >= MAX_DEPTH:
            raise reader.fail(f"more than {MAX_DEPTH} levels of parentheses")
        reader.at += 1
        inner = _expression(reader, columns, depth + 1)
        if reader.peek() != ")":
            raise reader.fail("a ')' is missing")
        reader.at += 1
        return inner
    reader.terms += 1
    if reader.terms > MAX_TERMS:
        raise reader.fail(f"more than {MAX_TERMS} terms")
    return _term(reader, columns)


def _term(reader: _Reader, columns: dict[str, Column]) -> sql.Composable:
    match = _ATTRIBUTE.match(reader.text, reader.at)
    if match is None:
        raise reader.fail("an attribute name is expected")
    name = match.group()
    reader.at = match.end()
    operator = next((o for o in _OPERATORS if reader.text.startswith(o, reader.at)), None)
    column = columns.get(name)
    if operator is None:
        return (
            sql.SQL("FALSE") if column is None else sql.SQL("({} IS NOT NULL)").format(column.expr)
        )
    reader.at += len(operator)
    raw = _raw_value(reader)
    if column is None:
        return sql.SQL("FALSE")  # the type has no such attribute: nothing matches
    if operator in ("~=", "!~="):
        return _pattern(name, column, operator, raw)
    if operator in ("==", "!=") and _top_level(raw, ","):
        values = [_value(name, column, item) for item in _split(raw, ",")]
        test = sql.SQL("{} = ANY({})").format(column.expr, sql.Literal(values))
        return (
            test
            if operator == "=="
            else sql.SQL("NOT ({} = ANY({}))").format(column.expr, sql.Literal(values))
        )
    if operator in ("==", "!=") and _top_level(raw, ".."):
        low_text, high_text = _split(raw, "..", 2)
        low, high = _value(name, column, low_text), _value(name, column, high_text)
        test = sql.SQL("{} BETWEEN {} AND {}").format(
            column.expr, sql.Literal(low), sql.Literal(high)
        )
        return test if operator == "==" else sql.SQL("NOT ({})").format(test)
    value = _value(name, column, raw)
    return sql.SQL("({} {} {})").format(
        column.expr, sql.SQL(_SQL_OPERATORS[operator]), sql.Literal(value)
    )


def _raw_value(reader: _Reader) -> str:
    """The value text: up to the next ;, | or ) outside quotes."""
    start = reader.at
    quoted = False
    while reader.at < len(reader.text):
        char = reader.text[reader.at]
        if char == "\\" and quoted:
            reader.at += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and char in ";|)":
            break
        reader.at += 1
    if quoted:
        raise reader.fail("a closing '\"' is missing")
    raw = reader.text[start : reader.at]
    if not raw:
        raise reader.fail("a value is expected")
    return raw


def _top_level(raw: str, needle: str) -> bool:
    return len(_split(raw, needle)) > 1


def _split(raw: str, needle: str, most: int = 0) -> list[str]:
    """Split on ``needle`` outside quotes."""
    parts: list[str] = []
    start, at, quoted = 0, 0, False
    while at < len(raw):
        if raw[at] == "\\" and quoted:
            at += 2
            continue
        if raw[at] == '"':
            quoted = not quoted
        elif not quoted and raw.startswith(needle, at) and (not most or len(parts) < most - 1):
            parts.append(raw[start:at])
            at += len(needle)
            start = at
            continue
        at += 1
    parts.append(raw[start:])
    return parts


def _unquote(raw: str) -> str | None:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            return str(json.loads(raw))
        except ValueError:
            return raw[1:-1]
    return None


def _value(name: str, column: Column, raw: str) -> Any:
    """A q value read as the kind the attribute holds."""
    text = _unquote(raw)
    if column.kind == "number":
        if text is None and _NUMBER.fullmatch(raw):
            return float(raw)
        raise _bad("q", f"{name} is a number; {raw!r} is not")
    if column.kind == "bool":
        if raw in ("true", "false"):
            return raw == "true"
        raise _bad("q", f"{name} is true or false; {raw!r} is neither")
    if column.kind == "datetime":
        try:
            moment = datetime.fromisoformat(text if text is not None else raw)
        except ValueError:
            raise _bad("q", f"{name} is a date-time; {raw!r} is not ISO 8601") from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    if text is None and _URI.fullmatch(raw):
        return raw  # an entity id compared with a Relationship may go unquoted
    if text is None:
        raise _bad("q", f'{name} is text; quote the value ("…"), got {raw!r}')
    return text


def _pattern(name: str, column: Column, operator: str, raw: str) -> sql.Composable:
    if column.kind != "text":
        raise _bad("q", f"{operator} matches text; {name} is not text")
    pattern = _unquote(raw)
    pattern = raw if pattern is None else pattern
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _bad("q", f"{pattern!r} is not a regular expression ({exc})") from None
    match = "~" if operator == "~=" else "!~"
    return sql.SQL("({} {} {})").format(column.expr, sql.SQL(match), sql.Literal(pattern))


# --- geo-queries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeoQuery:
    georel: str
    geometry: str
    coordinates: Any
    distance: tuple[str, float] | None = None

    def condition(self, lon: sql.Composable, lat: sql.Composable) -> sql.Composable:
        """The SQL condition on an entity's point (``lon``, ``lat``)."""
        if self.georel == "near":
            assert self.distance is not None
            x, y = self.coordinates
            kind, metres = self.distance
            distance = _haversine(lon, lat, x, y)
            if kind == "minDistance":
                return sql.SQL("({} >= {})").format(distance, sql.Literal(metres))
            # A box around the circle first: cheap, and lets an index on the columns help.
            dlat = math.degrees(metres / EARTH_RADIUS_M)
            cos = math.cos(math.radians(y))
            dlon = 180.0 if cos < 1e-9 else min(180.0, dlat / cos)
            return sql.SQL(
                "({lat} BETWEEN {s} AND {n} AND {lon} BETWEEN {w} AND {e} AND {d} <= {m})"
            ).format(
                lat=lat,
                lon=lon,
                s=sql.Literal(y - dlat),
                n=sql.Literal(y + dlat),
                w=sql.Literal(x - dlon),
                e=sql.Literal(x + dlon),
                d=distance,
                m=sql.Literal(metres),
            )
        if self.georel == "equals":
            x, y = self.coordinates
            return sql.SQL("({} = {} AND {} = {})").format(lon, sql.Literal(x), lat, sql.Literal(y))
        inside = _inside(lon, lat, self.coordinates, self.geometry)
        if self.georel == "disjoint":
            return sql.SQL("({} IS NOT NULL AND NOT {})").format(lon, inside)
        return inside


def _haversine(lon: sql.Composable, lat: sql.Composable, x: float, y: float) -> sql.Composable:
    return sql.SQL(
        "(2 * {r} * asin(sqrt(power(sin(radians({lat} - {y}) / 2), 2) + cos(radians({y})) "
        "* cos(radians({lat})) * power(sin(radians({lon} - {x}) / 2), 2))))"
    ).format(r=sql.Literal(EARTH_RADIUS_M), lat=lat, lon=lon, x=sql.Literal(x), y=sql.Literal(y))


def _ring(ring: list[list[float]]) -> str:
    return "(" + ",".join(f"({x!r},{y!r})" for x, y, *_ in ring) + ")"


def _inside(
    lon: sql.Composable, lat: sql.Composable, coordinates: Any, geometry: str
) -> sql.Composable:
    """Point in (Multi)Polygon with PostgreSQL's own geometric types: inside the outer ring of a
    part and outside its holes."""
    polygons = [coordinates] if geometry == "Polygon" else list(coordinates)
    point = sql.SQL("point({}, {})").format(lon, lat)
    parts = []
    for rings in polygons:
        outer = sql.SQL("{}::polygon @> {}").format(sql.Literal(_ring(rings[0])), point)
        holes = [
            sql.SQL("NOT ({}::polygon @> {})").format(sql.Literal(_ring(hole)), point)
            for hole in rings[1:]
        ]
        parts.append(sql.SQL("({})").format(sql.SQL(" AND ").join([outer, *holes])))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


_GEOMETRIES: Final = {
    "near": ("Point",),
    "equals": ("Point",),
    "within": ("Polygon", "MultiPolygon"),
    "intersects": ("Polygon", "MultiPolygon"),
    "disjoint": ("Polygon", "MultiPolygon"),
}


def parse_geo(georel: str | None, geometry: str | None, coordinates: str | None) -> GeoQuery | None:
    """A geo-query from its three parameters (all or none); raises InvalidInput naming the one."""
    given = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise _bad(missing[0], "a geo-query needs georel, geometry and coordinates together")
    assert georel is not None and geometry is not None and coordinates is not None
    distance = None
    relation = georel
    if georel.startswith("near"):
        match = _DISTANCE.fullmatch(georel)
        if match is None:
            raise _bad(
                "georel", f"{georel!r}: near takes ;maxDistance==<metres> or ;minDistance==<metres>"
            )
        relation, distance = "near", (match.group(1), float(match.group(2)))
    if relation not in _GEOMETRIES:
        raise _bad(
            "georel",
            f"{georel!r} is not offered; use one of: near, " + ", ".join(list(_GEOMETRIES)[1:]),
        )
    if geometry not in _GEOMETRIES[relation]:
        raise _bad(
            "geometry",
            f"{relation} takes " + " or ".join(_GEOMETRIES[relation]) + f", not {geometry!r}",
        )
    try:
        points = json.loads(coordinates)
    except ValueError:
        raise _unreadable(
            "coordinates", f"{coordinates[:80]!r} is not a JSON array of coordinates"
        ) from None
    try:
        shaped = shape({"type": geometry, "coordinates": points})
    except (TypeError, ValueError, IndexError, AttributeError, shapely.errors.ShapelyError):
        raise _bad("coordinates", f"not the coordinates of a {geometry}") from None
    if shaped.is_empty or not _in_range(shaped.bounds):
        raise _bad("coordinates", "longitudes run from -180 to 180 and latitudes from -90 to 90")
    if isinstance(shaped, Polygon | MultiPolygon):
        if shapely.get_num_coordinates(shaped) > MAX_VERTICES:
            raise _bad("coordinates", f"more than {MAX_VERTICES} vertices")
        if not shaped.is_valid:
            raise _bad(
                "coordinates", f"the {geometry} is not valid ({shapely.is_valid_reason(shaped)})"
            )
    return GeoQuery(relation, geometry, points, distance)


def _in_range(bounds: tuple[float, ...]) -> bool:
    west, south, east, north = bounds
    finite = all(math.isfinite(b) for b in bounds)
    return finite and -180 <= west <= east <= 180 and -90 <= south <= north <= 90
