"""Alert records: raising, resolving and acknowledging them, and announcing each change.

In ``ioc`` because ticket actions and the dossier fold resolve alerts in their own transactions.

Whatever raises an alert (the SLA engine, the traffic watch) goes through here, inside its own
transaction. At most one alert per subject, rule and level is active at a time (a partial
unique index), so raising is idempotent: a repeat, a restarted engine or a second engine
process racing the first adds nothing. Every change is announced on the ``ioc_alerts``
channel when the transaction commits, in batch notices of many alerts each.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import psycopg

CHANNEL: Final = "ioc_alerts"
SUBJECT_KINDS: Final = ("ticket", "dossier", "sensor")
SEVERITIES: Final = ("info", "warning", "critical")
# Levels sent to the agency at once; the others wait for the agency's digest.
IMMEDIATE_LEVELS: Final = frozenset({"overdue", "escalated"})

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class NewAlert:
    """An alert to raise. ``subject_id`` is the ticket id, dossier id or sensor id."""

    subject_kind: str
    subject_id: str
    rule: str
    level: str
    severity: str
    agency: str | None
    title: str
    category: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    lon: float | None = None
    lat: float | None = None
    escalated_to: str | None = None

    @property
    def digest(self) -> bool:
        return self.level not in IMMEDIATE_LEVELS


def next_digest(now: datetime, every_s: float) -> datetime:
    """The next digest boundary after ``now``: digests go out on a fixed grid of instants."""
    epoch = now.timestamp()
    return datetime.fromtimestamp(math.floor(epoch / every_s + 1) * every_s, tz=UTC)


# The notice of one alert's change (over an alert row ``a``), compact JSON; the live feeds filter
# on agency and escalated_to. A row of named columns turned into JSON costs the database less
# than json_build_object's seventeen pairs, and its text has no spaces to send and log.
NOTICE = """row_to_json((SELECT n FROM (SELECT
      a.id AS alert, CASE WHEN a.resolved_at IS NULL THEN 'active' ELSE 'resolved' END AS status,
      a.subject_kind, a.subject_id, a.rule, a.level, a.severity, a.agency, a.escalated_to,
      a.category, a.title, a.lon, a.lat, a.raised_at, a.resolved_at, a.resolution,
      a.acked_at) AS n))::text"""
# Changes are announced in batches, ``{"alerts": [notice, …]}``, one per this many bytes of
# notices (NOTIFY carries at most 8,000 bytes; a notice is a few hundred), so a tick raising
# thousands of alerts sends a few hundred notices, not one per alert. Consumers filter a batch
# item by item (ioc/store/livelog.py ``filtered``).
BATCH_BYTES: Final = 6000

# Query steps announcing the notices ``t`` of a preceding step ``notices`` (alert ``id``, ``t``),
# batch by batch, all batches logged by one call (ioc_announce_each, migration 0031); the final
# SELECT must read ``sent`` (a step nothing reads is not run).
BATCH_STEPS = f"""runs AS (SELECT id, t, sum(octet_length(t) + 1) OVER (ORDER BY id) AS run
                           FROM notices),
batches AS (SELECT run / {BATCH_BYTES} AS batch, string_agg(t, ',' ORDER BY id) AS t
            FROM runs GROUP BY run / {BATCH_BYTES}),
sent AS (SELECT ioc_announce_each(%(channel)s,
                                  array_agg('{{"alerts":[' || t || ']}}' ORDER BY batch))
         FROM batches)"""
# The same over the alert rows of a preceding step ``a``. ``notices`` is materialized so each
# notice is built once (inlined, it would be built for the running sum and again for the batch).
ANNOUNCE_STEPS = f"""notices AS MATERIALIZED (SELECT a.id, {NOTICE} AS t FROM a), {BATCH_STEPS}"""
_ANNOUNCE = f"""WITH a AS (SELECT * FROM alerts WHERE id = ANY(%(ids)s::bigint[])), {ANNOUNCE_STEPS}
SELECT count(*) FROM sent"""


async def announce(conn: Conn, alert_ids: Sequence[int]) -> None:
    """Tell the live feeds these alerts changed (sent when the transaction commits)."""
    if alert_ids:
        await conn.execute(_ANNOUNCE, {"channel": CHANNEL, "ids": list(alert_ids)})


async def raise_alerts(
    conn: Conn, alerts: Sequence[NewAlert], now: datetime, digest_every_s: float
) -> list[int]:
    """Insert the alerts not already active; the ids of those actually raised.

    Overdue and escalated alerts are due for delivery at once; the others at the agency's next
    digest. Call inside a transaction.
    """
    if not alerts:
        return []
    digest_at = next_digest(now, digest_every_s)
    cur = await conn.execute(
        """INSERT INTO alerts (subject_kind, subject_id, rule, level, severity, agency,
                               escalated_to, category, title, details, lon, lat, raised_at,
                               digest, notify_at)
           SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                                %b::text[], %b::text[], %b::text[], %b::text[], %b::jsonb[],
                                %b::float8[], %b::float8[], %b::timestamptz[], %b::bool[],
                                %b::timestamptz[])
           ON CONFLICT (subject_kind, subject_id, rule, level) WHERE resolved_at IS NULL
           DO NOTHING
           RETURNING id""",
        (
            [a.subject_kind for a in alerts],
            [a.subject_id for a in alerts],
            [a.rule for a in alerts],
            [a.level for a in alerts],
            [a.severity for a in alerts],
            [a.agency for a in alerts],
            [a.escalated_to for a in alerts],
            [a.category for a in alerts],
            [a.title for a in alerts],
            [json.dumps(dict(a.details), ensure_ascii=False, default=str) for a in alerts],
            [a.lon for a in alerts],
            [a.lat for a in alerts],
            [now] * len(alerts),
            [a.digest for a in alerts],
            [digest_at if a.digest else now for a in alerts],
        ),
    )
    ids = [int(row[0]) for row in await cur.fetchall()]
    await announce(conn, ids)
    return ids


async def resolve_alerts(
    conn: Conn,
    subject_kind: str,
    subject_ids: Sequence[str],
    now: datetime,
    resolution: str,
    rule: str | None = None,
    levels: Sequence[str] | None = None,
) -> list[int]:
    """Resolve the active alerts of these subjects (optionally one rule, some levels)."""
    if not subject_ids:
        return []
    cur = await conn.execute(
        """UPDATE alerts SET resolved_at = %s, resolution = %s, notify_at = NULL
           WHERE subject_kind = %s AND subject_id = ANY(%b::text[]) AND resolved_at IS NULL
             AND (%s::text IS NULL OR rule = %s)
             AND (%b::text[] IS NULL OR level = ANY(%b::text[]))
           RETURNING id""",
        (
            now,
            resolution,
            subject_kind,
            list(subject_ids),
            rule,
            rule,
            None if levels is None else list(levels),
            None if levels is None else list(levels),
        ),
    )
    ids = [int(row[0]) for row in await cur.fetchall()]
    await announce(conn, ids)
    return ids


async def active_subjects(conn: Conn, subject_kind: str, rule: str) -> dict[str, str]:
    """subject id → level of every active alert of one kind and rule (for checks that clear)."""
    cur = await conn.execute(
        "SELECT subject_id, level FROM alerts"
        " WHERE subject_kind = %s AND rule = %s AND resolved_at IS NULL",
        (subject_kind, rule),
    )
    return {str(s): str(level) for s, level in await cur.fetchall()}
