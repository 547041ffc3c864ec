"""MQTT topic routes: which topics carry which events, and how a device's JSON becomes one.

A route's topic is a template: ``ioc/traffic/{sensor_id}`` subscribes to ``ioc/traffic/+``
and gives every event from it the ``sensor_id`` of the topic's last level. A payload is our
event JSON, or, with ``fields``, a device's own JSON whose fields are renamed (dotted paths
reach into nested objects). Each message becomes one NDJSON line for the same intake the HTTP
API uses, so the checks, the refusals and the idempotency keys are the same.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from ioc.errors import ConfigError
from ioc.events.kinds import KINDS

# Event fields that hold a time: a device may send them as Unix seconds.
_MOMENTS = frozenset({"observed_at", "occurred_at", "at", "appointment_at"})
_decoder = msgspec.json.Decoder()
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()


class Route(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One topic template and how its payloads become events."""

    topic: str
    kind: str | None = None
    fields: dict[str, str] = {}
    set: dict[str, Any] = {}
    key: str | None = None  # an API key for this route's events (else the subscriber's)

    def subscription(self) -> str:
        """The MQTT subscription: each ``{name}`` level becomes ``+``."""
        return "/".join("+" if _capture(level) else level for level in self.topic.split("/"))

    def match(self, topic: str) -> dict[str, str] | None:
        """The captured levels if ``topic`` is one of this route's, else None."""
        want = self.topic.split("/")
        have = topic.split("/")
        captured: dict[str, str] = {}
        for at, level in enumerate(want):
            if level == "#":
                return captured
            if at >= len(have):
                return None
            name = _capture(level)
            if name is not None:
                if not have[at]:
                    return None
                captured[name] = have[at]
            elif level != "+" and level != have[at]:
                return None
        return captured if len(have) == len(want) else None


class Refused(Exception):
    """A message that cannot become an event, and why."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


DEFAULT_ROUTES = (
    Route(topic="ioc/events/#"),
    Route(topic="ioc/traffic/{sensor_id}", kind="traffic_count"),
    Route(topic="ioc/reports/#", kind="field_report"),
    Route(topic="ioc/dossiers/#", kind="dossier_event"),
    Route(topic="ioc/feedback/#", kind="feedback"),
)


def _capture(level: str) -> str | None:
    if len(level) > 2 and level.startswith("{") and level.endswith("}"):
        return level[1:-1]
    return None


def check_routes(routes: Sequence[Route], where: str) -> tuple[Route, ...]:
    """The routes, or ConfigError naming the first wrong one."""
    if not routes:
        raise ConfigError(f"{where}: no [[route]] given")
    for number, route in enumerate(routes, start=1):
        levels = route.topic.split("/")
        if "#" in levels[:-1] or any("#" in v and v != "#" for v in levels):
            raise ConfigError(f"{where}: route {number}: '#' may only be the last topic level")
        if any(("{" in v or "}" in v) and _capture(v) is None for v in levels):
            raise ConfigError(f"{where}: route {number}: write a captured level as {{name}}")
        if route.kind is not None and route.kind not in KINDS:
            raise ConfigError(
                f"{where}: route {number}: unknown kind {route.kind!r}; accepted: "
                + ", ".join(KINDS)
            )
    return tuple(routes)


def load_routes(path: Path | None) -> tuple[Route, ...]:
    """The routes of a TOML file (``[[route]]`` tables), or the defaults without one."""
    if path is None:
        return DEFAULT_ROUTES
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        routes = msgspec.convert(document.get("route", []), list[Route])
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"IOC_MQTT_ROUTES_FILE={str(path)!r}: {exc}") from None
    return check_routes(routes, str(path))


def find_route(routes: Sequence[Route], topic: str) -> tuple[Route, dict[str, str]] | None:
    for route in routes:
        captured = route.match(topic)
        if captured is not None:
            return route, captured
    return None


def event_lines(
    route: Route, captured: dict[str, str], payload: bytes
) -> list[tuple[bytes | None, bytes | Refused]]:
    """A message's events as NDJSON lines: one for a JSON object, one per element for a JSON
    array (a gateway's batch). Each comes with its element (None for an object) and is a line,
    or the reason it was refused; raises Refused when the message as a whole is."""
    body = payload.strip()
    if body[:1] != b"[":
        return [(None, event_line(route, captured, payload))]
    try:
        items = _raw_list.decode(body)
    except msgspec.DecodeError as exc:
        raise Refused(None, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise Refused(None, "the JSON is nested too deeply") from None
    if not items:
        raise Refused(None, "the payload is an empty array")
    out: list[tuple[bytes | None, bytes | Refused]] = []
    for raw in items:
        element = bytes(raw)
        try:
            out.append((element, event_line(route, captured, element)))
        except Refused as refusal:
            out.append((element, refusal))
    return out


def event_line(route: Route, captured: dict[str, str], payload: bytes) -> bytes:
    """One message as an NDJSON line of our event JSON; raises Refused."""
    if not payload.strip():
        raise Refused(None, "the payload is empty")
    plain = route.kind is None and not captured and not route.fields and not route.set
    if plain and b"\n" not in payload:
        return payload  # already our event JSON on one line: the intake decodes and checks it
    try:
        document = _decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise Refused(None, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise Refused(None, "the JSON is nested too deeply") from None
    if not isinstance(document, dict):
        raise Refused(None, f"the payload must be a JSON object, not {type(document).__name__}")
    event = _mapped(route, document) if route.fields else document  # decoded anew: ours
    for name, value in route.set.items():
        event.setdefault(name, value)
    if route.kind is not None:
        given = event.setdefault("kind", route.kind)
        if given != route.kind:
            raise Refused("kind", f"kind {given!r} does not match the topic's {route.kind!r}")
    for name, value in captured.items():
        given = event.setdefault(name, value)
        if given != value:
            raise Refused(name, f"{name} {given!r} does not match the topic's {value!r}")
    return _encoder.encode(event)


def _mapped(route: Route, document: dict[str, Any]) -> dict[str, Any]:
    """The event fields read from a device's JSON by the route's ``fields`` (event → path)."""
    event: dict[str, Any] = {}
    for name, path in route.fields.items():
        value: Any = document
        for step in path.split("."):
            if not isinstance(value, dict) or step not in value:
                raise Refused(name, f"the payload has no {path!r} (read as {name})")
            value = value[step]
        if name in _MOMENTS and isinstance(value, int | float) and not isinstance(value, bool):
            try:
                value = datetime.fromtimestamp(value, UTC).isoformat()
            except (OverflowError, OSError, ValueError):
                raise Refused(name, f"{value!r} ({path}) is not a Unix time in seconds") from None
        event[name] = value
    return event


def dead_letter(topic: str, field: str | None, reason: str, payload: bytes, index: int) -> bytes:
    """What the dead-letter topic gets for a refused message (``index`` ≥ 0: an element of a
    gateway's array): ``{topic, field, reason, [index], payload | payload_hex}``."""
    letter: dict[str, Any] = {"topic": topic, "field": field, "reason": reason}
    if index >= 0:
        letter["index"] = index
    try:
        letter["payload"] = payload.decode()
    except UnicodeDecodeError:
        letter["payload_hex"] = payload.hex()
    return _encoder.encode(letter)
