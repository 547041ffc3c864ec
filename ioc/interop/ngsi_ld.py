"""NGSI-LD notifications in: Smart Data Models ``TrafficFlowObserved`` entities become readings.

An Orion-LD subscription posts a Notification (ETSI GS CIM 009, 5.3.1) whose ``data`` holds the
entities, in the normalized form (``{"type": "Property", "value": …}``), the concise form (the
``type`` members left out, a Property without sub-attributes reduced to its value, a GeoProperty
to its GeoJSON) or as key-values. Each entity is read into a ``traffic_count`` and handed to the
same intake as ``POST /v1/events/batch``, so the sensor check, the time rules and idempotency are
the ones every reading gets; the answer says what happened to each entity.

JSON-LD ``@context``: remote contexts are not fetched (the platform runs on closed networks, and
fetching URLs a client names is a way into the network). Attribute and type names are matched by
their Smart Data Models short names, whether given as terms, as full IRIs (the name after the last
``/`` or ``#``), or through term definitions written inline in the ``@context``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from ioc.auth import Principal
from ioc.errors import InvalidInput, PayloadTooLarge
from ioc.events.intake import Intake

TRAFFIC: Final = "TrafficFlowObserved"
ENTITY_PREFIX: Final = "urn:ngsi-ld:"
NDJSON: Final = "application/x-ndjson"
# Our reading's fields → the Smart Data Models attribute a refusal is about.
_ATTRIBUTE_OF: Final = {
    "sensor_id": "id",
    "observed_at": "dateObserved",
    "interval_s": "dateObserved",
    "vehicle_count": "intensity",
    "avg_speed_kmh": "averageVehicleSpeed",
    "occupancy": "occupancy",
    "lane": "laneId",
}


class Refused(Exception):
    """One entity cannot be read as a reading: which attribute, and why."""

    def __init__(self, attribute: str | None, reason: str) -> None:
        super().__init__(reason)
        self.attribute = attribute
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    """What happened to one entity of a notification."""

    id: str | None
    sensor_id: str | None
    status: str  # accepted, duplicate or rejected
    attribute: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "sensor_id": self.sensor_id, "status": self.status}
        if self.status == "rejected":
            out.update(attribute=self.attribute, reason=self.reason)
        return out


@dataclass(frozen=True)
class Received:
    """The answer to a notification."""

    outcomes: tuple[Outcome, ...]

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def nothing_taken(self) -> bool:
        """Entities came and none was stored or already stored: the notification failed."""
        return bool(self.outcomes) and self.count("rejected") == len(self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.count("accepted"),
            "duplicates": self.count("duplicate"),
            "rejected": self.count("rejected"),
            "entities": [o.as_dict() for o in self.outcomes],
        }


# --- @context and names --------------------------------------------------------------------


def local_name(name: str) -> str:
    """A name as the Smart Data Models term it stands for: the part of an IRI after its last
    ``/`` or ``#`` (``https://smartdatamodels.org/dataModel.Transportation/intensity`` →
    ``intensity``); a plain term as it is."""
    if "://" in name or name.startswith("urn:"):
        return name.replace("#", "/").rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return name


class Terms:
    """The term definitions written inline in a ``@context`` (remote ones are not fetched)."""

    def __init__(self, contexts: Iterable[Any] = ()) -> None:
        self._iri: dict[str, str] = {}
        for context in contexts:
            self._add(context)

    def _add(self, context: Any) -> None:
        if isinstance(context, list):
            for item in context:
                self._add(item)
        elif isinstance(context, Mapping):
            for term, definition in context.items():
                if isinstance(definition, str):
                    self._iri[str(term)] = definition
                elif isinstance(definition, Mapping) and isinstance(definition.get("@id"), str):
                    self._iri[str(term)] = definition["@id"]

    def with_context(self, context: Any) -> Terms:
        terms = Terms()
        terms._iri = dict(self._iri)
        terms._add(context)
        return terms

    def name(self, given: str) -> str:
        """The short name a term, compact IRI or IRI stands for."""
        iri = self._iri.get(given)
        if iri is None and ":" in given and "://" not in given:
            prefix, _, suffix = given.partition(":")
            base = self._iri.get(prefix)
            if base is not None:
                iri = base + suffix
        return local_name(iri if iri is not None else given)


# --- attribute values in any of the forms ----------------------------------------------------


def value_of(attribute: Any) -> Any:
    """The value of an attribute in the normalized, concise or key-values form.

    A multi-attribute (a list of instances with ``datasetId``) gives its default instance (the
    one without ``datasetId``), else its first. A JSON-LD typed value (``{"@type": "DateTime",
    "@value": …}``) gives its ``@value``.
    """
    instances = isinstance(attribute, list) and attribute
    if instances and all(
        isinstance(a, Mapping) and ("value" in a or "object" in a) for a in attribute
    ):
        default = [a for a in attribute if "datasetId" not in a]
        attribute = (default or attribute)[0]
    if isinstance(attribute, Mapping):
        if "value" in attribute:
            attribute = attribute["value"]
        elif "object" in attribute:
            attribute = attribute["object"]
    if isinstance(attribute, Mapping) and "@value" in attribute:
        attribute = attribute["@value"]
    return attribute


def observed_at_of(attribute: Any) -> str | None:
    """The ``observedAt`` sub-attribute of an attribute, if it has one."""
    if isinstance(attribute, Mapping) and isinstance(attribute.get("observedAt"), str):
        return str(attribute["observedAt"])
    return None


def _number(attributes: Mapping[str, Any], name: str) -> float | None:
    if name not in attributes:
        return None
    value = value_of(attributes[name])
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Refused(name, f"{value!r} is not a number")
    return float(value)


def _whole(attributes: Mapping[str, Any], name: str) -> int | None:
    value = _number(attributes, name)
    if value is None:
        return None
    if not value.is_integer():
        raise Refused(name, f"{value:g} is not a whole number")
    return int(value)


def _moment(text: Any, name: str) -> datetime:
    """An NGSI-LD DateTime; one without an offset is UTC, as the specification writes them."""
    if not isinstance(text, str):
        raise Refused(name, f"{text!r} is not an ISO 8601 date-time")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Refused(name, f"{text!r} is not an ISO 8601 date-time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _period(attributes: Mapping[str, Any], interval_s: int | None) -> tuple[str, int]:
    """(observed_at, interval_s): the end of the observation period and its length.

    ``dateObserved`` is an instant or an ISO 8601 interval ``start/end``; ``dateObservedFrom``
    and ``dateObservedTo`` give the period in two attributes. An instant needs the period's
    length from the subscription's endpoint (``?interval_s=`` on the notify URL).
    """
    start: Any = None
    end: Any = None
    observed = value_of(attributes.get("dateObserved"))
    if isinstance(observed, str) and "/" in observed:
        start, _, end = observed.partition("/")
    elif "dateObservedFrom" in attributes and "dateObservedTo" in attributes:
        start = value_of(attributes["dateObservedFrom"])
        end = value_of(attributes["dateObservedTo"])
    elif observed is not None:
        end = observed
    else:
        end = observed_at_of(attributes.get("intensity"))
        if end is None:
            raise Refused("dateObserved", "required: the time of the observation (ISO 8601)")
    finish = _moment(end, "dateObserved")
    if start is None:
        if interval_s is None:
            raise Refused(
                "dateObserved",
                "an instant gives no observation period: send dateObserved as an interval "
                "(start/end) or dateObservedFrom and dateObservedTo, or give the period with "
                "?interval_s= on the subscription's notify URL",
            )
        return finish.isoformat(), interval_s
    begin = _moment(start, "dateObserved")
    seconds = (finish - begin).total_seconds()
    if seconds <= 0 or not seconds.is_integer():
        raise Refused(
            "dateObserved", f"the period {start}/{end} must end after it starts, in whole seconds"
        )
    return finish.isoformat(), int(seconds)


def sensor_of(entity_id: str, attributes: Mapping[str, Any]) -> str:
    """The sensor an entity is about: its ``refDevice`` (``urn:ngsi-ld:Device:<sensor>``), or
    else its own id (``urn:ngsi-ld:TrafficFlowObserved:<sensor>``)."""
    device = value_of(attributes.get("refDevice"))
    if device is not None:
        if not isinstance(device, str):
            raise Refused("refDevice", f"{device!r} is not an entity id")
        return _key(device)
    return _key(entity_id)


def _key(entity_id: str) -> str:
    if entity_id.startswith(ENTITY_PREFIX):
        rest = entity_id[len(ENTITY_PREFIX) :]
        if ":" in rest:
            return rest.split(":", 1)[1]
    return entity_id


def reading_of(
    entity: Mapping[str, Any], terms: Terms, interval_s: int | None
) -> tuple[str, dict[str, Any]]:
    """(sensor id, our traffic_count event) of one TrafficFlowObserved entity; raises Refused."""
    local = terms.with_context(entity.get("@context"))
    entity_id = entity.get("id", entity.get("@id"))
    if not isinstance(entity_id, str) or not entity_id:
        raise Refused("id", "required: the entity's id (a URI)")
    kind = entity.get("type", entity.get("@type"))
    if not isinstance(kind, str) or local.name(kind) != TRAFFIC:
        raise Refused("type", f"{kind!r} is not received here; send {TRAFFIC} entities")
    attributes = {
        local.name(str(k)): v for k, v in entity.items() if k not in ("@context", "id", "type")
    }
    sensor = sensor_of(entity_id, attributes)
    observed_at, seconds = _period(attributes, interval_s)
    count = _whole(attributes, "intensity")
    if count is None:
        raise Refused("intensity", "required: the number of vehicles in the period")
    occupancy = _number(attributes, "occupancy")
    if occupancy is not None and not 0 <= occupancy <= 1:
        raise Refused(
            "occupancy", f"{occupancy:g} is not a fraction of the observation time (0 to 1)"
        )
    event: dict[str, Any] = {
        "kind": "traffic_count",
        "sensor_id": sensor,
        "observed_at": observed_at,
        "interval_s": seconds,
        "vehicle_count": count,
        "avg_speed_kmh": _number(attributes, "averageVehicleSpeed"),
        "occupancy": None if occupancy is None else round(occupancy * 100, 4),
        "lane": _whole(attributes, "laneId"),
    }
    return sensor, event


# --- a notification ------------------------------------------------------------------------


def entities_of(notification: Any, most: int) -> list[Any]:
    """The entities a Notification carries; raises InvalidInput for anything else."""
    if not isinstance(notification, Mapping):
        raise InvalidInput("the body is not an NGSI-LD Notification (a JSON object)")
    kind = notification.get("type", "Notification")
    if kind != "Notification":
        raise InvalidInput(f"type is {kind!r}; a notification has type 'Notification'")
    data = notification.get("data")
    if not isinstance(data, list):
        raise InvalidInput(
            "data: required, the list of entities (a subscription whose endpoint accepts "
            "application/json or application/ld+json)",
            [{"field": "data", "reason": "required: a list of entities"}],
        )
    if len(data) > most:
        raise PayloadTooLarge(f"the notification has {len(data)} entities; at most {most}")
    return data


def _entity_id(entity: Any) -> str | None:
    if isinstance(entity, Mapping):
        given = entity.get("id", entity.get("@id"))
        return given if isinstance(given, str) else None
    return None


async def receive(
    intake: Intake,
    notification: Any,
    contexts: Sequence[Any],
    who: Principal,
    interval_s: int | None,
    most: int,
) -> Received:
    """Store a notification's TrafficFlowObserved entities as readings, through the intake."""
    entities = entities_of(notification, most)
    terms = Terms(contexts).with_context(
        notification.get("@context") if isinstance(notification, Mapping) else None
    )
    outcomes: list[Outcome | None] = []
    lines: list[bytes] = []
    numbered: dict[int, tuple[int, str]] = {}  # NDJSON line → (entity index, sensor)
    for index, entity in enumerate(entities):
        try:
            if not isinstance(entity, Mapping):
                raise Refused(None, "an entity is a JSON object")
            sensor, event = reading_of(entity, terms, interval_s)
        except Refused as exc:
            outcomes.append(
                Outcome(_entity_id(entity), None, "rejected", exc.attribute, exc.reason)
            )
            continue
        outcomes.append(None)
        lines.append(msgspec.json.encode(event))
        numbered[len(lines)] = (index, sensor)
    if lines:
        result = await intake.batch(b"\n".join(lines), NDJSON, who)
        duplicates = set(result.duplicate_lines)
        refusals = {r.line: r for r in result.rejected}
        for line, (index, sensor) in numbered.items():
            entity_id = _entity_id(entities[index])
            if line in refusals:
                why = refusals[line]
                attribute = _ATTRIBUTE_OF.get(why.field or "", why.field)
                outcomes[index] = Outcome(entity_id, sensor, "rejected", attribute, why.reason)
            else:
                status = "duplicate" if line in duplicates else "accepted"
                outcomes[index] = Outcome(entity_id, sensor, status)
    return Received(tuple(o for o in outcomes if o is not None))
