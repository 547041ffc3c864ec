"""NDJSON batches read in one decoder call must come out exactly as reading them line by line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec
import pytest

from ioc.clock import ManualClock
from ioc.events import validation
from ioc.events.kinds import IDENT_PATTERN, TrafficCount
from ioc.events.rules import IDENT_REASON, EventRules, Problem
from ioc.store.writer import TABLES

NDJSON = "application/x-ndjson"
GOOD = (
    b'{"kind":"traffic_count","sensor_id":"S-1","observed_at":"2025-03-03T08:00:00+07:00",'
    b'"interval_s":300,"vehicle_count":12,"avg_speed_kmh":31.5}'
)
REPORT = (
    b'{"kind":"field_report","external_id":"r-1","category":"roads","description":"pothole",'
    b'"lon":107.6,"lat":16.4,"occurred_at":"2025-03-03T08:00:00+07:00",'
    b'"media_urls":["https://a.example/1.jpg","https://a.example/2.jpg"]}'
)
SPLIT_ARRAY = REPORT.replace(b'.jpg",', b'.jpg",\n')


def _line_by_line(body: bytes) -> validation.Decoded:
    return validation._decode_line_by_line(body, validation._as_is)


def _same(a: validation.Decoded, b: validation.Decoded) -> None:
    assert a.lines == b.lines
    assert a.events == b.events
    assert a.rejected == b.rejected


@pytest.mark.parametrize(
    "body",
    [
        GOOD,
        GOOD + b"\n",
        GOOD + b"\r\n" + GOOD + b"\r\n\r\n",
        b"\n".join([GOOD, REPORT, GOOD]),
        b"\n" + GOOD,  # a blank first line: numbers start at 2
        GOOD + b"\n\n" + GOOD,
        GOOD + b"\n   \n" + GOOD,
        b"\x0b" + GOOD,  # a blank the line reader skips and JSON does not
        # Two events on one line, and one event over two lines: as many events as lines.
        GOOD + b"],[" + GOOD + b"\n" + SPLIT_ARRAY,
        GOOD + b"," + GOOD + b"\n" + GOOD,
        b"[" + GOOD + b"]\n" + GOOD,
        GOOD + b"\n" + GOOD.replace(b"300", b'"300"'),
        GOOD + b"\n{not json\n" + GOOD,
        GOOD[:-1] + b"\n}",
        b"[]",
        b"\n\n",
    ],
)
def test_whole_body_reading_matches_line_by_line(body: bytes) -> None:
    _same(validation.decode_batch(body, NDJSON), _line_by_line(body))


def test_whole_body_reading_is_taken_for_plain_lines() -> None:
    body = b"\n".join([GOOD, REPORT, GOOD]) + b"\n"
    whole = validation._decode_lines_at_once(body, validation._as_is)
    assert whole is not None
    _same(whole, _line_by_line(body))
    # Lines glued across a newline are never read as one event.
    assert validation._decode_lines_at_once(SPLIT_ARRAY + b"\n" + GOOD, validation._as_is) is None


def test_per_request_checker_refuses_what_check_refuses() -> None:
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    now = datetime(2025, 3, 3, 12, tzinfo=UTC)
    rules = EventRules(zone=zone, clock=ManualClock(now), categories=frozenset, max_future_s=600)
    future = (now + timedelta(hours=1)).astimezone(timezone(timedelta(hours=7))).isoformat()
    lines = [
        GOOD,
        GOOD.replace(b"2025-03-03T08:00:00+07:00", future.encode()),
        GOOD.replace(b"2025-03-03T08:00:00+07:00", b"1999-12-31T23:00:00+07:00"),
        GOOD.replace(b"2025-03-03T08:00:00+07:00", b"2025-03-03T08:00:00"),  # the zone's time
        GOOD.replace(b"31.5", b"1e-40"),
        GOOD,
    ]
    checked = validation.check_batch(b"\n".join(lines), NDJSON, rules, None, 100)
    assert checked.lines == [1, 4, 6]
    assert [r.line for r in checked.rejected] == [2, 3, 5]
    assert [r.field for r in checked.rejected] == ["observed_at", "observed_at", "avg_speed_kmh"]
    zoned = checked.events[1]
    assert isinstance(zoned, TrafficCount)
    assert zoned.observed_at == datetime(2025, 3, 3, 8, tzinfo=zone)
    one_by_one: list[object] = []
    for line in lines:
        try:
            one_by_one.append(rules.check(validation.decode_one(line), None))
        except Exception as exc:
            one_by_one.append(type(exc))
    assert [one_by_one[n - 1] for n in checked.lines] == checked.events


def test_identifiers_outside_the_alphabet_are_refused_by_the_rules() -> None:
    """The rules check identifiers once per distinct value, with the decoder's wording, and
    let no newline through at the end (the decoder's ``$`` did)."""
    rules = EventRules(
        zone=ZoneInfo("Asia/Ho_Chi_Minh"),
        clock=ManualClock(datetime(2025, 3, 3, 12, tzinfo=UTC)),
        categories=lambda: frozenset({"roads"}),
    )
    dossier = (
        b'{"kind":"dossier_event","dossier_id":"HS-1","procedure_code":"1.001","agency":"SXD",'
        b'"event":"registered","at":"2025-03-03T08:00:00+07:00","channel":"counter"}'
    )
    lines = [
        GOOD,
        GOOD.replace(b'"S-1"', b'"S 1"'),
        GOOD.replace(b'"S-1"', b'"S-1\\n"'),
        GOOD.replace(b'"S-1"', b'"-S1"'),
        GOOD.replace(b'"S-1"', b'"S\\u00e01"'),
        dossier,
        dossier.replace(b'"SXD"', b'"S/X\\tD"'),
        REPORT.replace(b'"r-1"', b'"r 1"'),
        GOOD,
    ]
    checked = validation.check_batch(b"\n".join(lines), NDJSON, rules, "hue", 100)
    assert checked.lines == [1, 6, 9]
    assert [(r.line, r.field, r.reason) for r in checked.rejected] == [
        (2, "sensor_id", IDENT_REASON),
        (3, "sensor_id", IDENT_REASON),
        (4, "sensor_id", IDENT_REASON),
        (5, "sensor_id", IDENT_REASON),
        (7, "agency", IDENT_REASON),
        (8, "external_id", IDENT_REASON),
    ]
    for number, line in enumerate(lines, start=1):
        if number in checked.lines:
            continue
        with pytest.raises(Problem) as refused:
            rules.check(validation.decode_one(line), "hue")
        assert refused.value.reason == IDENT_REASON
    # The published schema still states the alphabet.
    schema = msgspec.json.schema(TrafficCount)
    assert schema["$defs"]["TrafficCount"]["properties"]["sensor_id"]["pattern"] == IDENT_PATTERN


def test_a_readings_row_is_its_fields_in_the_tables_column_order() -> None:
    table = TABLES[TrafficCount]
    assert TrafficCount.__struct_fields__ == table.columns
    reading = validation.decode_one(GOOD)
    assert table.row(reading) == tuple(getattr(reading, name) for name in table.columns)
