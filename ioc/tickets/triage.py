"""Operators' triage: the moves that correct a ticket rather than work it.

Recategorise and move the pin re-run routing; merge and split regroup reports
(``ioc.tickets.regroup``); spam and not_actionable reject with a reason. Operators and admins
only. Each move runs in one transaction with its history lines and live notices; a dry run
runs the same transaction and rolls it back, so the preview is exactly what confirming does.

The SLA clock's rule for each move (README, "Operators' triage"):
- recategorise: the intake time is kept; the deadline is the new category's, counted from it.
- move_pin: the clock is unchanged (same category, same intake).
- merge: the surviving ticket keeps its own clock; the merged one stops, like a rejection.
- split: the report's ticket gets the clock it would have had: its category's, from its intake.
- spam, not_actionable: the clock stops, as for reject.
When the agency changes the ticket starts again as "new" there, without an assignee.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from ioc.auth import Principal, Role
from ioc.deadlines import DeadlineBook
from ioc.errors import Conflict, InvalidInput, MalformedBody
from ioc.events.validation import explain
from ioc.params import bad, text
from ioc.routing.router import Router
from ioc.tickets import regroup
from ioc.tickets.actions import actor_of
from ioc.tickets.clock import on_action
from ioc.tickets.opening import notify
from ioc.tickets.queue import Ticket, fetch_ticket
from ioc.tickets.states import TRIAGE_MOVES, check_triage
from ioc.tickets.triage_steps import lock, notify_moved, record, restart_clock, route

Conn = psycopg.AsyncConnection[Any]

TRIAGERS = frozenset({Role.OPERATOR, Role.ADMIN})

_Text = Annotated[str, msgspec.Meta(max_length=2000)]
_Name = Annotated[str, msgspec.Meta(max_length=200)]
_Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class TriageRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A triage move: its name, the reason, what the move needs, and whether only to preview."""

    action: _Name
    reason: _Text = ""
    category: _Name | None = None  # recategorise
    lon: float | None = None  # move_pin
    lat: float | None = None
    into: _Id | None = None  # merge: the ticket that stays
    report: _Id | None = None  # split: the report to take out
    dry_run: bool = False


class Outcome(msgspec.Struct, kw_only=True):
    """What a move did (or, on a dry run, would do): the ticket after it, and the other
    ticket it touched (merge: the one merged into; split: the report's own ticket)."""

    action: str
    dry_run: bool
    ticket: Ticket
    other: Ticket | None = None


_decoder = msgspec.json.Decoder(TriageRequest)
# The fields each move needs besides the reason.
_NEEDS = {
    "recategorise": ("category",),
    "move_pin": ("lon", "lat"),
    "merge": ("into",),
    "split": ("report",),
}


def decode_request(body: bytes | bytearray) -> TriageRequest:
    """A triage request body; raises MalformedBody (not JSON) or InvalidInput."""
    try:
        given = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        field, reason = explain(exc)
        raise InvalidInput(
            f"{field or 'body'}: {reason}", [{"field": field, "reason": reason}]
        ) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(
            'a JSON object like {"action": "spam", "reason": "…"} is expected: ' + explain(exc)[1]
        ) from None
    if given.action not in TRIAGE_MOVES:
        raise bad(
            "action", f"{given.action!r} is not a triage move; accepted: " + ", ".join(TRIAGE_MOVES)
        )
    text("reason", given.reason)
    if given.category is not None:
        text("category", given.category)
    if not given.reason.strip():
        raise bad("reason", "required: say why (it goes into the ticket's history)")
    for name in _NEEDS.get(given.action, ()):
        if getattr(given, name) is None:
            raise bad(name, f"{given.action} needs {name}")
    if given.action == "move_pin":
        assert given.lon is not None and given.lat is not None
        if not (math.isfinite(given.lon) and -180 <= given.lon <= 180):
            raise bad("lon", f"{given.lon} is not a longitude (-180 to 180)")
        if not (math.isfinite(given.lat) and -90 <= given.lat <= 90):
            raise bad("lat", f"{given.lat} is not a latitude (-90 to 90)")
    return msgspec.structs.replace(given, reason=given.reason.strip())


class _DryRun(Exception):
    """Raised inside the transaction to roll a preview back; carries the outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("dry run")
        self.outcome = outcome


async def triage(
    conn: Conn,
    who: Principal,
    ticket_id: int,
    request: TriageRequest,
    now: datetime,
    book: DeadlineBook,
    router: Router,
    categories: frozenset[str],
) -> Outcome:
    """Apply (or preview) one triage move in its own transaction."""
    who.require(TRIAGERS)
    try:
        async with conn.transaction():
            if request.action == "merge" and request.into is not None and request.into < ticket_id:
                # Both tickets are locked in id order, so two opposite merges cannot deadlock.
                await conn.execute(
                    "SELECT 1 FROM tickets WHERE id = %s FOR UPDATE", (request.into,)
                )
            row = await lock(conn, ticket_id)
            check_triage(ticket_id, row["state"], request.action)
            actor = actor_of(who)
            other: int | None = None
            if request.action in ("recategorise", "move_pin"):
                await _reroute(conn, row, request, now, book, router, categories, actor)
            elif request.action == "merge":
                assert request.into is not None
                other = await regroup.merge(
                    conn, row, request.into, request.reason, now, book, actor
                )
            elif request.action == "split":
                assert request.report is not None
                other = await regroup.split(
                    conn, row, request.report, request.reason, now, book, router, actor
                )
            else:
                await _reject(conn, row, request, now, book, actor)
            ticket = await fetch_ticket(conn, ticket_id, now)
            assert ticket is not None
            outcome = Outcome(
                action=request.action,
                dry_run=request.dry_run,
                ticket=ticket,
                other=None if other is None else await fetch_ticket(conn, other, now),
            )
            if request.dry_run:
                raise _DryRun(outcome)
    except _DryRun as preview:
        return preview.outcome
    return outcome


async def _reroute(
    conn: Conn,
    row: dict[str, Any],
    request: TriageRequest,
    now: datetime,
    book: DeadlineBook,
    router: Router,
    categories: frozenset[str],
    actor: str,
) -> None:
    category, lon, lat = row["category"], row["lon"], row["lat"]
    if request.action == "recategorise":
        assert request.category is not None
        if request.category not in categories:
            raise bad(
                "category",
                f"{request.category!r} is not a category; accepted: {', '.join(sorted(categories))}",
            )
        if request.category == category:
            raise Conflict(f"ticket {row['id']} is already of category {category!r}")
        category = request.category
        note = f"category: {row['category']} → {category}"
    else:
        assert request.lon is not None and request.lat is not None
        lon, lat = request.lon, request.lat
        note = f"pin: {row['lon']:.6f},{row['lat']:.6f} → {lon:.6f},{lat:.6f}"
    decision = route(router, lon, lat, category, row["opened_at"])
    moved = decision.agency != row["agency"]
    state = "new" if moved else row["state"]
    where = decision.jurisdiction_name or "no jurisdiction"
    note += f"; routed: {where}, {decision.how} → {decision.agency or 'unrouted'}"
    await conn.execute(
        """UPDATE tickets SET category = %s, lon = %s, lat = %s, agency = %s,
             jurisdiction_code = %s, jurisdiction_level = %s, routing = %s, state = %s,
             assignee = CASE WHEN %s THEN NULL ELSE assignee END, updated_at = %s
           WHERE id = %s""",
        (
            category,
            lon,
            lat,
            decision.agency,
            decision.jurisdiction_code,
            decision.level,
            Jsonb(decision.why()),
            state,
            moved,
            now,
            row["id"],
        ),
    )
    await record(
        conn,
        row["id"],
        now,
        actor,
        request.action,
        (row["state"], state),
        (row["agency"], decision.agency),
        f"{note}; {request.reason}",
    )
    if category != row["category"]:
        await restart_clock(conn, book, row["id"], category, row["opened_at"], now)
    await notify_moved(conn, row["id"], row["agency"], decision.agency)


async def _reject(
    conn: Conn,
    row: dict[str, Any],
    request: TriageRequest,
    now: datetime,
    book: DeadlineBook,
    actor: str,
) -> None:
    await conn.execute(
        "UPDATE tickets SET state = 'rejected', updated_at = %s, closed_at = %s WHERE id = %s",
        (now, now, row["id"]),
    )
    label = "spam" if request.action == "spam" else "not actionable"
    await record(
        conn,
        row["id"],
        now,
        actor,
        request.action,
        (row["state"], "rejected"),
        (row["agency"], row["agency"]),
        f"{label}: {request.reason}",
    )
    await on_action(conn, book, row["id"], row["state"], "rejected", now)
    await notify(conn, [row["id"]])
