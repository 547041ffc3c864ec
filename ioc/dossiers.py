"""A dossier's current state and SLA clock, folded from its events inside the ingest transaction.

``dossier_events`` is the history; ``dossiers`` holds one row per dossier, recomputed from the
whole history of every dossier a batch touches. Recomputing (rather than applying the new
events to the old row) makes late and out-of-order events harmless. Each dossier is locked
(an advisory lock on its id) for the fold, so two batches touching it never fold stale views.

A citizen's ``rated`` event is history, not a step: the fold leaves it out (``ioc.ratings``).

The clock starts when the dossier is accepted, pauses while a supplement or a fee is
requested, and stops when the result is returned. The appointment date the one-stop shop
gives, when it gives one, is the deadline (pushed back by later pauses); otherwise the
procedure's deadline policy sets it.

Each fold tells the live hub, once per transaction, how many dossiers changed (on the tickets'
channel, in a message keyed ``dossiers`` that ticket feeds ignore): the wall's dossier board
reads its figures again when it hears one. The message also names the dossiers (``ids``) when
their names fit in a notice; without ``ids`` the wall reads its whole dossier layer again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, get_args

import psycopg

from ioc.alerts.records import resolve_alerts
from ioc.deadlines import DeadlineBook, Plan, pauses_of
from ioc.events.kinds import DossierEventName
from ioc.tickets.opening import CHANNEL as LIVE_CHANNEL

Conn = psycopg.AsyncConnection[Any]

_ORDER: Final = {name: n for n, name in enumerate(get_args(DossierEventName))}
PAUSING: Final = frozenset({"supplement_requested", "fee_requested"})
RESUMING: Final = frozenset(
    {"supplement_received", "fee_paid", "in_processing", "processed", "result_returned"}
)
FINISHING: Final = frozenset({"result_returned", "refused", "withdrawn", "stopped"})
# The most characters of dossier ids a notice names (a NOTIFY payload holds under 8,000 bytes).
NOTICE_ID_CHARS: Final = 4000
_STATE_AFTER: Final = {
    "supplement_received": "in_processing",
    "fee_paid": "in_processing",
}


@dataclass
class _Event:
    source: str
    dossier_id: str
    procedure_code: str
    agency: str
    event: str
    at: datetime
    channel: str
    online_level: str | None
    appointment_at: datetime | None
    paid_online: bool
    digitised: bool
    lon: float | None
    lat: float | None


def fold(book: DeadlineBook, events: Sequence[_Event]) -> dict[str, Any]:
    """The dossier row for one dossier's events (in any order)."""
    history = sorted(events, key=lambda e: (e.at, _ORDER[e.event]))
    first, last = history[0], history[-1]
    accepted = next((e.at for e in history if e.event == "accepted"), None)
    finished = next((e for e in history if e.event in FINISHING), None)
    appointment = next((e for e in reversed(history) if e.appointment_at is not None), None)
    located = next((e for e in reversed(history) if e.lon is not None), None)
    row: dict[str, Any] = {
        "dossier_id": first.dossier_id,
        "source": first.source,
        "procedure_code": last.procedure_code,
        "agency": last.agency,
        "state": _STATE_AFTER.get(last.event, last.event),
        "channel": first.channel,
        "online_level": next(
            (e.online_level for e in reversed(history) if e.online_level is not None), None
        ),
        "paid_online": any(e.paid_online for e in history),
        "digitised": any(e.digitised for e in history),
        "lon": located.lon if located else None,
        "lat": located.lat if located else None,
        "registered_at": first.at,
        "accepted_at": accepted,
        "appointment_at": appointment.appointment_at if appointment else None,
        "deadline_at": None,
        "sla_allowed_s": None,
        "due_soon_at": None,
        "paused_at": None,
        "paused_s": 0.0,
        "finished_at": finished.at if finished else None,
        "result": None,
        "used_working_s": None,
        "last_acted_at": last.at,
        "last_event_at": last.at,
        "event_count": len(history),
        "sla_stage": None,
        "next_check_at": None,
    }
    if accepted is None:
        return row
    marks = [
        (e.at, e.event in PAUSING)
        for e in history
        if e.at >= accepted and (e.event in PAUSING or e.event in RESUMING)
    ]
    spans = pauses_of(marks)
    open_pause = spans[-1][0] if spans and spans[-1][1] is None else None
    closed = [(a, b) for a, b in spans if b is not None]
    plan: Plan | None
    if appointment is not None and appointment.appointment_at is not None:
        plan = book.plan_until("working", accepted, appointment.appointment_at)
        # Pauses after the appointment was given push it back; earlier ones it already allows for.
        pushing = [(a, b) for a, b in closed if a >= appointment.at]
    else:
        plan = book.dossier_plan(row["procedure_code"], accepted)
        pushing = closed
    paused = sum(book.elapsed("working", a, b) for a, b in closed)
    row["paused_s"] = paused
    if plan is None:
        return row
    push = sum(book.elapsed(plan.counting, a, b) for a, b in pushing)
    deadline = book.add(plan.counting, plan.deadline_at, push) if push else plan.deadline_at
    due_soon = book.add(plan.counting, plan.due_soon_at, push) if push else plan.due_soon_at
    row.update(deadline_at=deadline, sla_allowed_s=plan.allowed_s, due_soon_at=due_soon)
    if finished is not None:
        ended = [(a, b or finished.at) for a, b in spans]
        row["used_working_s"] = book.working_used(accepted, finished.at, ended)
        if finished.event == "result_returned":
            row["result"] = book.result(finished.at, deadline)
    elif open_pause is not None:
        row["paused_at"] = open_pause
    else:
        row.update(sla_stage="due_soon", next_check_at=due_soon)
    return row


_COLUMNS: Final = (
    "dossier_id",
    "source",
    "procedure_code",
    "agency",
    "state",
    "channel",
    "online_level",
    "paid_online",
    "digitised",
    "lon",
    "lat",
    "registered_at",
    "accepted_at",
    "appointment_at",
    "deadline_at",
    "sla_allowed_s",
    "due_soon_at",
    "paused_at",
    "paused_s",
    "finished_at",
    "result",
    "used_working_s",
    "last_acted_at",
    "last_event_at",
    "event_count",
    "sla_stage",
    "next_check_at",
)
_TYPES: Final = [
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "bool",
    "bool",
    "float8",
    "float8",
    "timestamptz",
    "timestamptz",
    "timestamptz",
    "timestamptz",
    "float8",
    "timestamptz",
    "timestamptz",
    "float8",
    "timestamptz",
    "text",
    "float8",
    "timestamptz",
    "timestamptz",
    "int4",
    "text",
    "timestamptz",
]
_UPSERT: Final = (
    f"INSERT INTO dossiers ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _TYPES)
    + ") ON CONFLICT (dossier_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:])
)


def _typed(value: Any, kind: str) -> Any:
    """One Python type per array: a sum of nothing is the int 0, the column wants a float."""
    return float(value) if kind == "float8" and value is not None else value


def notice(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The live notice of a fold: the count, and the ids when they fit."""
    ids = [str(row["dossier_id"]) for row in rows]
    message: dict[str, Any] = {"dossiers": len(ids)}
    if sum(len(i) + 4 for i in ids) <= NOTICE_ID_CHARS:
        message["ids"] = ids
    return message


async def refold(conn: Conn, book: DeadlineBook, dossier_ids: Sequence[str], now: datetime) -> int:
    """Recompute the dossiers rows of these dossiers; call inside the ingest transaction."""
    ids = sorted(set(dossier_ids))
    if not ids:
        return 0
    await conn.execute(
        "SELECT pg_advisory_xact_lock(h) FROM"
        " (SELECT DISTINCT hashtextextended(d, 311) AS h FROM unnest(%b::text[]) AS d ORDER BY 1) AS k",
        (ids,),
    )
    cur = await conn.execute(
        """SELECT source, dossier_id, procedure_code, agency, event, at, channel, online_level,
                  appointment_at, paid_online, digitised, lon, lat
           FROM dossier_events WHERE dossier_id = ANY(%s) AND event <> 'rated'""",
        (ids,),
    )
    grouped: dict[str, list[_Event]] = defaultdict(list)
    for r in await cur.fetchall():
        grouped[r[1]].append(_Event(*r))
    rows = [fold(book, events) for events in grouped.values()]
    if not rows:
        return 0
    columns = [
        [_typed(row[c], kind) for row in rows] for c, kind in zip(_COLUMNS, _TYPES, strict=True)
    ]
    await conn.execute(_UPSERT, columns)
    await conn.execute("SELECT ioc_announce(%s, %s)", (LIVE_CHANNEL, json.dumps(notice(rows))))
    done = [row["dossier_id"] for row in rows if row["finished_at"] is not None]
    await resolve_alerts(conn, "dossier", done, now, "subject_closed", rule="deadline")
    return len(rows)
