"""The moves people make on a ticket: decoding an action, and applying it in one transaction.

The ticket's state, agency and SLA clock change together with its history line and the live notice.
Reopening (an operator's choice, e.g. after a "not satisfied" rating) notes in the history the
rating that counts for the ticket, if a citizen gave one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
import psycopg

from ioc import ratings
from ioc.auth import Principal, Role
from ioc.deadlines import DeadlineBook
from ioc.errors import Conflict, InvalidInput, MalformedBody
from ioc.events.validation import explain
from ioc.params import bad as _bad
from ioc.params import text as _text
from ioc.store.users import official_of
from ioc.tickets.clock import on_action
from ioc.tickets.opening import CHANNEL, notify
from ioc.tickets.queue import Ticket, fetch_ticket, not_found, scope_of
from ioc.tickets.states import MOVES, Action, check_move

Conn = psycopg.AsyncConnection[Any]

ACTORS = frozenset({Role.OPERATOR, Role.AGENCY, Role.ADMIN})
FINAL_STATES = frozenset({"closed", "rejected"})

_Text = Annotated[str, msgspec.Meta(max_length=2000)]
_Name = Annotated[str, msgspec.Meta(max_length=200)]


class _ActionBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    action: _Name
    assignee: _Name | None = None  # the login of an official of the ticket's agency
    reason: _Text = ""
    to_agency: _Name | None = None


_action_decoder = msgspec.json.Decoder(_ActionBody)


def decode_action(body: bytes | bytearray) -> Action:
    """An action request body; raises MalformedBody (not JSON) or InvalidInput."""
    try:
        given = _action_decoder.decode(body)
    except msgspec.ValidationError as exc:
        field, reason = explain(exc)
        if field == "action":
            reason += "; accepted: " + ", ".join(MOVES)
        raise InvalidInput(
            f"{field or 'body'}: {reason}", [{"field": field, "reason": reason}]
        ) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(
            'a JSON object like {"action": "start"} is expected: ' + explain(exc)[1]
        ) from None
    for name in ("reason", "assignee", "to_agency"):
        value = getattr(given, name)
        if value is not None:
            _text(name, value)
    assignee = given.assignee.strip() if given.assignee is not None else None
    to_agency = given.to_agency.strip() if given.to_agency is not None else None
    return Action(given.action, given.reason.strip(), assignee or None, to_agency or None)


def actor_of(who: Principal) -> str:
    """How the history names the caller: an official by name and login, a key by its label,
    else by its role and prefix."""
    if who.login is not None:
        return f"{who.label} ({who.login})"
    return who.label.strip() or f"{who.role.value}:{who.prefix}"


async def act(
    conn: Conn, who: Principal, ticket_id: int, action: Action, now: datetime, book: DeadlineBook
) -> Ticket:
    """Apply one action in its own transaction: lock, check, update, record, notify."""
    who.require(ACTORS)
    scope = scope_of(who)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT state, agency FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,)
        )
        row = await cur.fetchone()
        if row is None or (scope is not None and row[1] != scope):
            raise not_found(ticket_id)
        state, agency = row
        target = check_move(ticket_id, state, action)
        new_agency = agency
        if action.name == "transfer":
            new_agency = await _transfer_target(conn, ticket_id, agency, action.to_agency)
        assignee: str | None = None
        notes: list[str] = []
        if action.name == "assign":
            # An official of the ticket's agency, named by login (stored) and name (history).
            assignee, name = await official_of(conn, action.assignee or "", agency)
            notes.append(f"assignee: {name} ({assignee})")
        if action.name == "reopen":
            # Which rating the reopening answers, if a citizen rated the result.
            rated = await ratings.latest_of_ticket(conn, ticket_id)
            if rated is not None:
                word, score, at = rated
                marks = f" ({score}/5)" if score is not None else ""
                notes.append(f"rating: {word}{marks} at {at.isoformat()}")
        if action.reason:
            notes.append(action.reason)
        await conn.execute(
            """UPDATE tickets SET
                 state = %(target)s,
                 agency = %(agency)s,
                 assignee = CASE %(name)s WHEN 'assign' THEN %(assignee)s
                                          WHEN 'transfer' THEN NULL ELSE assignee END,
                 updated_at = %(now)s,
                 closed_at = CASE WHEN %(final)s THEN %(now)s
                                  WHEN %(target)s = 'reopened' THEN NULL ELSE closed_at END
               WHERE id = %(id)s""",
            {
                "target": target,
                "agency": new_agency,
                "name": action.name,
                "assignee": assignee,
                "now": now,
                "final": target in FINAL_STATES,
                "id": ticket_id,
            },
        )
        await conn.execute(
            """INSERT INTO ticket_events (ticket_id, at, actor, action, from_state, to_state,
                                          from_agency, to_agency, note)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                ticket_id,
                now,
                actor_of(who),
                action.name,
                state,
                target,
                agency,
                new_agency,
                "; ".join(notes),
            ),
        )
        await on_action(conn, book, ticket_id, state, target, now)
        await notify(conn, [ticket_id])
        if new_agency != agency and agency is not None:
            await _notify_departure(conn, ticket_id, agency)
        ticket = await fetch_ticket(conn, ticket_id, now)
    assert ticket is not None  # locked above, inside this transaction
    return ticket


async def _transfer_target(
    conn: Conn, ticket_id: int, current: str | None, to_agency: str | None
) -> str:
    cur = await conn.execute("SELECT code FROM agencies WHERE code = %s", (to_agency,))
    if to_agency is None or await cur.fetchone() is None:
        raise _bad("to_agency", f"{to_agency!r} is not a known agency code")
    if to_agency == current:
        raise Conflict(f"ticket {ticket_id} is already with agency {to_agency!r}")
    return to_agency


async def _notify_departure(conn: Conn, ticket_id: int, left: str) -> None:
    """Tell the agency a ticket left that it is gone (the ordinary notice names only the new one)."""
    await conn.execute(
        "SELECT ioc_announce(%s, json_build_object('ticket', t.id, 'agency', t.agency,"
        " 'state', t.state, 'category', t.category, 'reports', t.report_count,"
        " 'from_agency', %s::text)::text) FROM tickets t WHERE t.id = %s",
        (CHANNEL, left, ticket_id),
    )
