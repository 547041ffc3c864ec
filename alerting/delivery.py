"""Delivering raised alerts to the webhook outbox, held back by silences.

Delivery runs in the same loop: alerts whose ``notify_at`` has come are sent to the webhook
outbox of each agency they are addressed to (the responsible one; for escalated alerts the
parent too), at once for overdue and escalated, in one digest per agency for the others;
unacknowledged overdue and escalated alerts repeat. A silence holds a delivery back until it
ends; a silence that names agencies holds back only the deliveries addressed to them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ioc.alerts.outbox import enqueue_many

Conn = psycopg.AsyncConnection[Any]


@dataclass
class Delivered:
    """What one delivery batch did: alerts read, alerts notified, messages queued."""

    handled: int = 0
    notified: int = 0
    queued: int = 0


async def deliver_due(
    pool: AsyncConnectionPool[Any], now: datetime, batch: int, repeat_s: float
) -> Delivered:
    """Send (or hold back) up to ``batch`` alerts whose ``notify_at`` has come; one transaction."""
    result = Delivered()
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """SELECT id, subject_kind, subject_id, rule, level, severity, agency,
                      escalated_to, category, title, details, raised_at, digest,
                      notifications, acked_at, resolved_at, notify_at
               FROM alerts WHERE notify_at <= %s
               ORDER BY notify_at LIMIT %s FOR UPDATE SKIP LOCKED""",
            (now, batch),
        )
        rows = await cur.fetchall()
        if not rows:
            return result
        silences = await _silences(conn, now)
        hooks = await _webhooks(conn)
        digests: dict[tuple[str, datetime], list[dict[str, Any]]] = defaultdict(list)
        updates: list[tuple[int, datetime | None, int]] = []
        messages: list[tuple[str, str, str, Mapping[str, Any]]] = []
        for row in rows:
            alert = _as_message(row)
            round_ = row[13]
            # Each delivery is held or sent on its own: a silence that names agencies holds
            # back only what is addressed to them (an agency's silence never holds back its
            # escalation to the parent agency).
            audience = list(dict.fromkeys(a for a in (row[6], row[7]) if a)) or [None]
            held = {
                target: until
                for target in audience
                if (until := _silenced_until(alert, silences, target)) is not None
            }
            sending = [t for t in audience if t is not None and t not in held and t in hooks]
            if row[12]:  # digest
                for target in sending:
                    digests[(target, row[16])].append(alert)
            else:
                for target in sending:
                    # The key names the round: a target already sent this round (before
                    # another's silence ended) is not sent it twice.
                    key = f"alert:{row[0]}:{round_}:{target}"
                    message = {"type": "alert", "agency": target, "alert": alert}
                    messages.append((target, "alert", key, message))
            if held:  # the round ends when the first held delivery is released
                updates.append((row[0], min(held.values()), round_))
                continue
            again = (
                now + timedelta(seconds=repeat_s)
                if repeat_s > 0 and not row[12] and row[14] is None and row[15] is None
                else None
            )
            updates.append((row[0], again, round_ + 1))
            result.notified += 1
        for (agency, at), alerts in digests.items():
            key = f"digest:{agency}:{at.isoformat()}"
            message = {
                "type": "digest",
                "agency": agency,
                "at": at.isoformat(),
                "alerts": alerts,
            }
            messages.append((agency, "digest", key, message))
        # One statement for the whole batch's messages, not a round trip for each.
        result.queued += await enqueue_many(conn, messages, now)
        await conn.execute(
            """UPDATE alerts a SET notify_at = u.next, notifications = u.n
               FROM unnest(%b::bigint[], %b::timestamptz[], %b::int[]) AS u(id, next, n)
               WHERE a.id = u.id""",
            ([u[0] for u in updates], [u[1] for u in updates], [u[2] for u in updates]),
        )
        result.handled = len(rows)
        return result


def _as_message(row: Sequence[Any]) -> dict[str, Any]:
    keys = [
        "id",
        "subject_kind",
        "subject_id",
        "rule",
        "level",
        "severity",
        "agency",
        "escalated_to",
        "category",
        "title",
        "details",
        "raised_at",
    ]
    message = dict(zip(keys, row[:12], strict=True))
    message["raised_at"] = row[11].isoformat()
    return message


async def _webhooks(conn: Conn) -> set[str]:
    cur = await conn.execute("SELECT code FROM agencies WHERE webhook_url IS NOT NULL")
    return {str(r[0]) for r in await cur.fetchall()}


async def _silences(conn: Conn, now: datetime) -> list[tuple[dict[str, Any], datetime]]:
    cur = await conn.execute(
        "SELECT matchers, ends_at FROM alert_silences WHERE starts_at <= %s AND ends_at > %s",
        (now, now),
    )
    out = []
    for matchers, ends in await cur.fetchall():
        out.append((matchers if isinstance(matchers, dict) else json.loads(matchers), ends))
    return out


def _silenced_until(
    alert: Mapping[str, Any],
    silences: Sequence[tuple[dict[str, Any], datetime]],
    target: str | None,
) -> datetime | None:
    """The end of the longest silence that holds back the delivery of ``alert`` to ``target``.

    A silence holds it back when all its matchers hold for the alert and, if it names agencies
    (``agency``, ``escalated_to``), ``target`` is one of them.
    """
    ends = []
    for matchers, end in silences:
        if not all(str(alert.get(key)) == str(value) for key, value in matchers.items()):
            continue
        named = {str(matchers[k]) for k in ("agency", "escalated_to") if k in matchers}
        if not named or target in named:
            ends.append(end)
    return max(ends) if ends else None
