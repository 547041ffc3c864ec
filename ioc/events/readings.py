"""Readings' live notices, and a group of single readings written in one statement.

The live map hears of each sensor's latest stored reading. A group of concurrently posted
single readings is stored, noted for the aggregates' upkeep and announced by one statement run
in autocommit mode (``ioc.store.inserts``): one round trip and no transaction to open or
commit, where the general path takes six. The notices' text is the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, TypeGuard

from ioc.events.kinds import Event, TrafficCount
from ioc.store.inserts import MOST, insert_few
from ioc.store.writer import TABLES, Written, span

# Readings per live notice: a NOTIFY payload must stay under 8000 bytes.
PER_NOTICE = 50
READINGS = "ioc_readings"
_SENSOR, _OBSERVED = attrgetter("sensor_id"), attrgetter("observed_at")


def _row(r: TrafficCount) -> list[Any]:
    return [r.sensor_id, r.observed_at.isoformat(), r.vehicle_count, r.avg_speed_kmh, r.interval_s]


def one_statement(events: Sequence[Event]) -> TypeGuard[Sequence[TrafficCount]]:
    """Whether a group of single events is written by ``write_group``."""
    return len(events) <= MOST and all(type(e) is TrafficCount for e in events)


async def write_group(conn: Any, events: Sequence[TrafficCount]) -> set[int]:
    """Store, note and announce readings (``conn`` in autocommit mode, no transaction open);
    the positions of the repeats."""
    fragments = [json.dumps(_row(e)) for e in events]
    lines = range(len(events))
    table = TABLES[TrafficCount]
    stored = await insert_few(
        conn, table, events, lines, span(events), (READINGS, fragments, PER_NOTICE)
    )
    return {line for line in lines if line not in stored}


async def announce(
    conn: Any,
    kind: type[Any],
    events: Sequence[Event],
    lines: Sequence[int],
    written: Written,
) -> None:
    """Tell the live map each sensor's latest stored reading (a few notices per batch, logged
    by one statement), in the order of each sensor's first stored line."""
    if kind is not TrafficCount:
        return
    stored: list[Any] = written.fresh(events, lines)
    places = dict.fromkeys(map(_SENSOR, stored))
    # A batch comes mostly in time order: the sort is one pass, and the latest comes last.
    latest = {r.sensor_id: r for r in sorted(stored, key=_OBSERVED)}
    rows = [_row(latest[sensor]) for sensor in places]
    notices = [
        json.dumps({"readings": rows[start : start + PER_NOTICE]})
        for start in range(0, len(rows), PER_NOTICE)
    ]
    if notices:
        # The elements of a json array keep their text: each notice is logged as built.
        await conn.execute(
            "SELECT ioc_announce(%s, notice::text) FROM json_array_elements(%s::json) AS notice",
            (READINGS, "[" + ", ".join(notices) + "]"),
        )
