"""The durable webhook outbox: what is owed to each agency's endpoint, and the log of each try.

In ``ioc`` because a message is written in the transaction of the change it reports, wherever
that change is made; ``alerting.webhooks`` sends what is owed.

A message is written in the same transaction as the change it reports (an alert raised, a
digest assembled), so it exists exactly when that change does. A dispatcher claims due rows
with a lease (``FOR UPDATE SKIP LOCKED``, then a ``lease_until`` time), sends them without
holding a transaction open, and settles each with the outcome. Several dispatcher processes
share the table; a dispatcher that dies mid-delivery leaves a lease that simply runs out, and
the row is sent again: delivery is at least once, and receivers deduplicate on the
idempotency key.

Every claim counts an attempt, and a settlement applies only if no later claim took the row
over (the attempt number is the lease's token); a success is recorded whatever the lease, so
a late 2xx still stops further sending.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import psycopg

Conn = psycopg.AsyncConnection[Any]
Verdict = Literal["delivered", "retry", "dead"]

KINDS: Final = ("alert", "digest")
JITTER: Final = 0.1  # retries are spread by up to this share of their delay


# --- writing and delivering ----------------------------------------------------------------


async def enqueue(
    conn: Conn, agency: str, kind: str, key: str, payload: Mapping[str, Any], now: datetime
) -> int | None:
    """Owe ``payload`` to ``agency``'s endpoint; the new id, or None if ``key`` is already owed.

    Runs in the caller's transaction when there is one, so the message commits (or rolls back)
    with whatever it reports.
    """
    if kind not in KINDS:
        raise ValueError(f"outbox kind {kind!r} is not one of {', '.join(KINDS)}")
    cur = await conn.execute(
        """INSERT INTO outbox (agency, kind, idempotency_key, payload, created_at, next_attempt_at)
           VALUES (%s, %s, %s, %s::jsonb, %s, %s)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING id""",
        (agency, kind, key, json.dumps(dict(payload), ensure_ascii=False, default=str), now, now),
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def enqueue_many(
    conn: Conn, messages: Sequence[tuple[str, str, str, Mapping[str, Any]]], now: datetime
) -> int:
    """Owe each ``(agency, kind, key, payload)`` at once, in one statement; how many were new.

    Like :func:`enqueue`, a key already owed adds nothing; a key repeated within ``messages``
    is written once (the first).
    """
    for _, kind, _, _ in messages:
        if kind not in KINDS:
            raise ValueError(f"outbox kind {kind!r} is not one of {', '.join(KINDS)}")
    unique: dict[str, tuple[str, str, str, Mapping[str, Any]]] = {}
    for message in messages:
        unique.setdefault(message[2], message)
    if not unique:
        return 0
    cur = await conn.execute(
        """INSERT INTO outbox (agency, kind, idempotency_key, payload, created_at, next_attempt_at)
           SELECT m.agency, m.kind, m.key, m.payload::jsonb, %s, %s
           FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
                WITH ORDINALITY AS m(agency, kind, key, payload, n)
           ORDER BY m.n
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING id""",
        (
            now,
            now,
            [m[0] for m in unique.values()],
            [m[1] for m in unique.values()],
            list(unique),
            [json.dumps(dict(m[3]), ensure_ascii=False, default=str) for m in unique.values()],
        ),
    )
    return len(await cur.fetchall())


@dataclass(frozen=True)
class Claimed:
    """A message leased to one dispatcher, with the agency's endpoint as it is right now."""

    id: int
    agency: str
    kind: str
    idempotency_key: str
    body: bytes  # the payload's JSON, the exact bytes that are signed and sent
    attempt: int  # this attempt's number (1 for the first); also the lease's token
    url: str | None
    secret: str | None
    lease_expired: bool  # the previous holder's lease ran out before it settled the row


# Due rows, a few per agency so that one agency's backlog cannot fill the batch, agencies (those
# with something due) in random order so that none is always first. The endpoint is read now,
# not at enqueue time: a corrected URL or secret takes effect on the next attempt.
_CLAIM = """
WITH picked AS (
    SELECT o.id, o.lease_until AS old_lease
    FROM (SELECT agency AS code FROM outbox
          WHERE state = 'pending' AND next_attempt_at <= %(now)s
          GROUP BY agency ORDER BY random()) a
    CROSS JOIN LATERAL (
        SELECT id, lease_until FROM outbox
        WHERE agency = a.code AND state = 'pending' AND next_attempt_at <= %(now)s
          AND (lease_until IS NULL OR lease_until <= %(now)s)
        ORDER BY next_attempt_at, id
        LIMIT %(per_agency)s
        FOR UPDATE SKIP LOCKED) o
    LIMIT %(limit)s)
UPDATE outbox o SET lease_until = %(lease)s, attempts = o.attempts + 1
FROM picked, agencies a
WHERE o.id = picked.id AND a.code = o.agency
RETURNING o.id, o.agency, o.kind, o.idempotency_key, o.payload::text, o.attempts,
          a.webhook_url, a.webhook_secret, picked.old_lease IS NOT NULL
"""


async def claim(
    conn: Conn, now: datetime, lease_s: float, limit: int, per_agency: int
) -> list[Claimed]:
    """Lease up to ``limit`` due messages (at most ``per_agency`` of each agency) until now + lease."""
    async with conn.transaction():
        cur = await conn.execute(
            _CLAIM,
            {
                "now": now,
                "lease": now + timedelta(seconds=lease_s),
                "limit": limit,
                "per_agency": per_agency,
            },
        )
        rows = await cur.fetchall()
    return [
        Claimed(
            id=int(r[0]),
            agency=str(r[1]),
            kind=str(r[2]),
            idempotency_key=str(r[3]),
            body=str(r[4]).encode(),
            attempt=int(r[5]),
            url=r[6],
            secret=r[7],
            lease_expired=bool(r[8]),
        )
        for r in sorted(rows, key=lambda r: int(r[0]))
    ]


def backoff(attempt: int, base_s: float, max_s: float, spread: float = 0.0) -> float:
    """Seconds to wait after failed attempt ``attempt``: doubling from ``base_s``, capped at
    ``max_s``, stretched by ``spread`` (a fraction in [0, 1) drawn by the caller) × JITTER."""
    delay = min(max_s, base_s * 2.0 ** min(attempt - 1, 62))
    return delay * (1.0 + JITTER * spread)


@dataclass(frozen=True)
class Attempt:
    """What happened when a message was sent once."""

    at: datetime
    url: str
    status: int | None  # None: no HTTP answer came
    error: str | None
    duration_ms: float


async def settle(
    conn: Conn, row: Claimed, attempt: Attempt, verdict: Verdict, retry_at: datetime | None
) -> bool:
    """Log the attempt and move the message on; False if another dispatcher holds it now."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO outbox_attempts (outbox_id, at, url, status, error, duration_ms)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            (row.id, attempt.at, attempt.url, attempt.status, attempt.error, attempt.duration_ms),
        )
        if verdict == "delivered":
            cur = await conn.execute(
                """UPDATE outbox SET state = 'delivered', delivered_at = %s, lease_until = NULL,
                                     last_error = NULL
                   WHERE id = %s AND state = 'pending'""",
                (attempt.at, row.id),
            )
        elif verdict == "retry":
            if retry_at is None:
                raise ValueError("a retry needs the time of the next attempt")
            cur = await conn.execute(
                """UPDATE outbox SET next_attempt_at = %s, lease_until = NULL, last_error = %s
                   WHERE id = %s AND state = 'pending' AND attempts = %s""",
                (retry_at, attempt.error, row.id, row.attempt),
            )
        else:
            cur = await conn.execute(
                """UPDATE outbox SET state = 'dead', lease_until = NULL, last_error = %s
                   WHERE id = %s AND state = 'pending' AND attempts = %s""",
                (attempt.error, row.id, row.attempt),
            )
        return cur.rowcount == 1


# --- the delivery log ----------------------------------------------------------------------
