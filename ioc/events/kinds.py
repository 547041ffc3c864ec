"""The event kinds: typed, frozen records with stable names.

The wire format is JSON with a ``kind`` field naming the record. Timestamps are RFC 3339; a
timestamp without an offset is read in the configured zone (default Asia/Ho_Chi_Minh) by
``ioc.events.validation``, never by the decoder.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal, get_args, get_type_hints

import msgspec
from msgspec import Meta

Lon = Annotated[float, Meta(ge=-180.0, le=180.0, description="Longitude, WGS 84 degrees")]
Lat = Annotated[float, Meta(ge=-90.0, le=90.0, description="Latitude, WGS 84 degrees")]
# Identifiers go into COPY text unescaped, so their alphabet excludes tabs, newlines, backslashes.
IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@#+\-]*$"
Ident = Annotated[str, Meta(min_length=1, max_length=128, pattern=IDENT_PATTERN)]
# An event's identifiers have the same alphabet, but the events' rules check it
# (``ioc.events.rules``), once for each distinct value in a request and with no newline let
# through at the end. The decoder would run the regular expression for every event: a batch's
# readings name the same few hundred sensors again and again, and that run was a sixth of the
# server's work on them. The published schema states the pattern all the same.
EventIdent = Annotated[
    str, Meta(min_length=1, max_length=128, extra_json_schema={"pattern": IDENT_PATTERN})
]
Code = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.\-]*$")]
SourceName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.\-]*$")]
Text = Annotated[str, Meta(max_length=10_000)]
Url = Annotated[str, Meta(max_length=2048, pattern=r"^https?://")]
# A photo uploaded first (POST /v1/media): the id that answer gave.
MediaId = Annotated[
    str,
    Meta(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="the id POST /v1/media answered with",
    ),
]
# The document says what the decoder reads: an RFC 3339 date-time (one without an offset is also
# read, in the configured zone).
Moment = Annotated[datetime, Meta(extra_json_schema={"format": "date-time"})]

DossierEventName = Literal[
    "registered",
    "accepted",
    "refused",
    "in_processing",
    "supplement_requested",
    "supplement_received",
    "fee_requested",
    "fee_paid",
    "processed",
    "result_returned",
    "withdrawn",
    "stopped",
    "rated",
]
# online: through the public-service portal; counter: at the one-stop shop; postal: by ordinary
# post; bcci: through the public postal service (bưu chính công ích), which collects and returns
# papers for the one-stop shop; kiosk: a 24/7 self-service kiosk (ki-ốt) run by the province.
Channel = Literal["online", "counter", "postal", "bcci", "kiosk"]
OnlineLevel = Literal["partial", "full_process"]
# A citizen's rating: one of three words, or a score of 1 to 5 (``ioc.events.kinds.satisfaction``
# maps it: 4-5 satisfied, 3 normal, 1-2 not satisfied).
RatingWord = Literal["satisfied", "normal", "not_satisfied"]
Score = Annotated[int, Meta(ge=1, le=5)]
Rating = RatingWord | Score
Comment = Annotated[str, Meta(max_length=2000)]


class Reporter(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Who reported: personal data, never shown on public pages or written to logs."""

    name: Annotated[str, Meta(max_length=200)] | None = None
    phone: Annotated[str, Meta(max_length=32)] | None = None
    email: Annotated[str, Meta(max_length=254)] | None = None

    def __repr__(self) -> str:
        return "Reporter(<personal data withheld>)"


class _Event(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="kind"
):
    pass


class FieldReport(_Event, tag="field_report", frozen=True):
    """A citizen's or official's report from the field (phản ánh hiện trường)."""

    external_id: EventIdent
    category: Code
    description: Text
    lon: Lon
    lat: Lat
    occurred_at: Moment
    source: SourceName | None = None
    address: Annotated[str, Meta(max_length=500)] | None = None
    reporter: Reporter | None = None
    media_urls: Annotated[tuple[Url, ...], Meta(max_length=20)] = ()
    media_ids: Annotated[tuple[MediaId, ...], Meta(max_length=20)] = ()


class TrafficCount(_Event, tag="traffic_count", frozen=True):
    """One counter reading; the sensor's position is registered data, not part of the reading."""

    sensor_id: EventIdent
    observed_at: Moment
    interval_s: Annotated[int, Meta(gt=0, le=86_400)]
    vehicle_count: Annotated[int, Meta(ge=0, le=1_000_000)]
    avg_speed_kmh: Annotated[float, Meta(ge=0.0, le=400.0)] | None = None
    occupancy: Annotated[float, Meta(ge=0.0, le=100.0, description="percent of time")] | None = None
    lane: Annotated[int, Meta(ge=0, le=64)] | None = None


class DossierEvent(_Event, tag="dossier_event", frozen=True):
    """A step in an administrative dossier's life (hồ sơ TTHC), from the one-stop-shop system."""

    dossier_id: EventIdent
    procedure_code: EventIdent
    agency: EventIdent
    event: DossierEventName
    at: Moment
    channel: Channel
    online_level: OnlineLevel | None = None
    appointment_at: Moment | None = None
    paid_online: bool = False
    digitised: bool = False
    lon: Lon | None = None
    lat: Lat | None = None
    source: SourceName | None = None
    external_id: EventIdent | None = None
    # Only on a "rated" event: the citizen's rating of the dossier's handling, after its result.
    rating: Rating | None = None
    comment: Comment | None = None


class Feedback(_Event, tag="feedback", frozen=True):
    """A citizen's rating of how their field report was handled, given after the result.

    ``report_id`` is the report's ``external_id`` at the same source. A rating with the same
    ``external_id`` is a repeat; a later one (by ``rated_at``) for the same report replaces it.
    """

    report_id: EventIdent
    rating: Rating
    rated_at: Moment
    comment: Comment | None = None
    source: SourceName | None = None
    external_id: EventIdent | None = None


Event = FieldReport | TrafficCount | DossierEvent | Feedback

KINDS: Final[dict[str, type[Event]]] = {
    "field_report": FieldReport,
    "traffic_count": TrafficCount,
    "dossier_event": DossierEvent,
    "feedback": Feedback,
}


def _ident_fields(kind: type[Event]) -> tuple[str, ...]:
    hints = get_type_hints(kind, include_extras=True)
    return tuple(
        name for name in kind.__struct_fields__ if hints[name] in (EventIdent, EventIdent | None)
    )


# Each kind's identifiers, whose alphabet the events' rules check.
IDENT_FIELDS: Final[dict[type[Event], tuple[str, ...]]] = {
    kind: _ident_fields(kind) for kind in KINDS.values()
}

# Values that a closed field accepts, quoted back in error messages.
ACCEPTED_VALUES: Final[dict[str, tuple[str, ...]]] = {
    "kind": tuple(KINDS),
    "event": get_args(DossierEventName),
    "channel": get_args(Channel),
    "online_level": get_args(OnlineLevel),
    "rating": (*get_args(RatingWord), "1", "2", "3", "4", "5"),
}

SATISFACTION: Final = get_args(RatingWord)


def satisfaction(rating: Rating) -> tuple[str, int | None]:
    """(satisfied | normal | not_satisfied, the 1-5 score if one was given)."""
    if isinstance(rating, str):
        return rating, None
    if rating >= 4:
        return "satisfied", rating
    return ("normal" if rating == 3 else "not_satisfied"), rating


def event_time(event: Event) -> datetime:
    """The time an event happened, whatever its kind."""
    if isinstance(event, TrafficCount):
        return event.observed_at
    if isinstance(event, FieldReport):
        return event.occurred_at
    if isinstance(event, Feedback):
        return event.rated_at
    return event.at


def json_schemas() -> tuple[dict[str, object], dict[str, object]]:
    """(schema of one event, component schemas) for the OpenAPI document."""
    (schema,), components = msgspec.json.schema_components(
        [Event], ref_template="#/components/schemas/{name}"
    )
    return schema, components
