"""Raising the SLA engine's deadline alerts: one statement per batch of due clocks.

Only the ids and levels cross the wire; each alert is built in the database from its ticket or
dossier row as this transaction sees it, and announced in batch live notices from the inserted
rows themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import psycopg

from ioc.alerts.records import BATCH_STEPS, CHANNEL, next_digest

Conn = psycopg.AsyncConnection[Any]

SEVERITY: Final = {"due_soon": "info", "overdue": "warning", "escalated": "critical"}
_TITLE: Final = {
    "ticket": {
        "due_soon": "Phản ánh #{id} sắp đến hạn xử lý",
        "overdue": "Phản ánh #{id} đã quá hạn xử lý",
        "escalated": "Phản ánh #{id} quá hạn, chưa được xử lý: chuyển cấp trên",
    },
    "dossier": {
        "due_soon": "Hồ sơ {id} sắp đến ngày hẹn trả",
        "overdue": "Hồ sơ {id} đã quá hạn giải quyết",
        "escalated": "Hồ sơ {id} quá hạn, chưa được xử lý: chuyển cấp trên",
    },
}


# Alerts are built from the claimed rows in the database, one statement per batch: only the
# ids and levels cross the wire, and the content is what the row says in this transaction.
# An alert already active is left out by NOT EXISTS rather than ON CONFLICT DO NOTHING, whose
# speculative insertion cost about a fifth of the insert: only the engine raises deadline
# alerts, and only for clocks it holds locked, so no other transaction can be raising the same
# one meanwhile; were one to, the unique index (alerts_one_active) would still refuse the
# second, failing the batch, which the next tick redoes without it.
_RAISE_COMMON = """INSERT INTO alerts AS a (subject_kind, subject_id, rule, level, severity, agency, escalated_to,
                    category, title, details, lon, lat, raised_at, digest, notify_at)
SELECT %(kind)s, s.id, 'deadline', s.level,
       CASE s.level WHEN 'due_soon' THEN %(s_due_soon)s WHEN 'overdue' THEN %(s_overdue)s
                    ELSE %(s_escalated)s END,
       s.agency,
       CASE WHEN s.level = 'escalated' THEN p.parent_code END,
       s.category,
       replace(CASE s.level WHEN 'due_soon' THEN %(t_due_soon)s WHEN 'overdue' THEN %(t_overdue)s
               ELSE %(t_escalated)s END, '{id}', s.id),
       s.details || CASE WHEN s.last_acted_at IS NULL THEN '{}'::jsonb
                    ELSE jsonb_build_object('last_acted_at', s.last_acted_at) END,
       s.lon, s.lat, %(now)s, s.level = 'due_soon',
       CASE WHEN s.level = 'due_soon' THEN %(digest_at)s ELSE %(now)s END
FROM ({source}) AS s
LEFT JOIN agencies p ON p.code = s.agency
WHERE NOT EXISTS (SELECT FROM alerts x
                  WHERE x.subject_kind = %(kind)s AND x.subject_id = s.id AND x.rule = 'deadline'
                    AND x.level = s.level AND x.resolved_at IS NULL)
ORDER BY s.n
RETURNING a.id, {NOTICE} AS t"""
# The notice of an alert just raised here, the same JSON text as ``NOTICE`` gives for its row
# (tests/test_sla_notices.py holds them equal), built for less: an alert just raised is active,
# unresolved and unacknowledged, its kind, rule and moment are the statement's own (the moment
# turned into JSON once, not per row), and its level and severity are plain words.
NOTICE_RAISED = """('{"alert":' || a.id || ',"status":"active","subject_kind":"' || %(kind)s
    || '","subject_id":' || to_json(a.subject_id) || ',"rule":"deadline","level":"' || a.level
    || '","severity":"' || a.severity || '","agency":' || coalesce(to_json(a.agency)::text, 'null')
    || ',"escalated_to":' || coalesce(to_json(a.escalated_to)::text, 'null')
    || ',"category":' || coalesce(to_json(a.category)::text, 'null')
    || ',"title":' || to_json(a.title) || ',"lon":' || coalesce(to_json(a.lon)::text, 'null')
    || ',"lat":' || coalesce(to_json(a.lat)::text, 'null')
    || ',"raised_at":' || (SELECT to_json(%(now)s::timestamptz)::text)
    || ',"resolved_at":null,"resolution":null,"acked_at":null}')"""
# The new alerts are announced from the inserted rows themselves, each notice built as its row
# is returned (not the whole row kept for a later step), in batch notices (sent when the batch
# commits).
_RAISE = f"""WITH notices AS ({_RAISE_COMMON.replace("{NOTICE}", NOTICE_RAISED)}), {BATCH_STEPS}
SELECT n.id FROM notices n, (SELECT count(*) FROM sent) AS k"""

_RAISE_SOURCE = {
    "ticket": """SELECT u.n, t.id::text AS id, u.level, t.agency, t.category, t.lon, t.lat,
                      t.last_acted_at,
                      jsonb_build_object('state', t.state, 'deadline_at', t.deadline_at)
                          AS details
               FROM unnest(string_to_array(%(ids)s, ','), string_to_array(%(levels)s, ','))
                   WITH ORDINALITY AS u(id, level, n)
               JOIN tickets t ON t.id = u.id::bigint
                             AND t.id = ANY(string_to_array(%(ids)s, ',')::bigint[])""",
    "dossier": """SELECT u.n, d.dossier_id AS id, u.level, coalesce(a.code, %(fallback)s) AS agency,
                       d.procedure_code AS category, d.lon, d.lat, d.last_acted_at,
                       jsonb_build_object('procedure_code', d.procedure_code,
                                          'dossier_agency', d.agency, 'state', d.state,
                                          'deadline_at', d.deadline_at) AS details
                FROM unnest(%(ids)b::text[], string_to_array(%(levels)s, ','))
                    WITH ORDINALITY AS u(id, level, n)
                JOIN dossiers d ON d.dossier_id = u.id AND d.dossier_id = ANY(%(ids)b::text[])
                LEFT JOIN agencies a ON a.code = d.agency""",
}


def _listed(kind: str, ids: list[str]) -> str | list[str]:
    """Ticket ids as one comma-separated text; dossier ids (any text) as a list."""
    return ",".join(ids) if kind == "ticket" else ids


async def raise_deadline_alerts(
    conn: Conn,
    kind: str,
    alerts: Sequence[tuple[str, str]],
    now: datetime,
    fallback_agency: str,
    digest_every_s: float,
) -> list[int]:
    """Insert the alerts (subject id, level) of one kind not already active; the ids raised."""
    if not alerts:
        return []
    titles = _TITLE[kind]
    cur = await conn.execute(
        _RAISE.replace("{source}", _RAISE_SOURCE[kind]),
        {
            "kind": kind,
            "channel": CHANNEL,
            # Ticket ids (digits) and levels (words) go as one text each, split by the
            # database: dumping a list of thousands costs psycopg about 0.5 µs an item.
            "ids": _listed(kind, [a[0] for a in alerts]),
            "levels": ",".join(a[1] for a in alerts),
            "fallback": fallback_agency,
            "t_due_soon": titles["due_soon"],
            "t_overdue": titles["overdue"],
            "t_escalated": titles["escalated"],
            "s_due_soon": SEVERITY["due_soon"],
            "s_overdue": SEVERITY["overdue"],
            "s_escalated": SEVERITY["escalated"],
            "now": now,
            "digest_at": next_digest(now, digest_every_s),
        },
    )
    return [int(row[0]) for row in await cur.fetchall()]
