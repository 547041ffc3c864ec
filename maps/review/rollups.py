"""Keeping the review's rollups current: folding the triggers' pending changes in, or rebuilding them."""

from __future__ import annotations

from typing import Any, Final

import psycopg
from psycopg import sql

Conn = psycopg.AsyncConnection[Any]


_LOCK: Final = 0x10C_2001  # serialises rollup refreshes


_REBUILD_DAYS: Final = """
INSERT INTO review_ticket_days
SELECT (opened_at AT TIME ZONE %(zone)s)::date, coalesce(agency, ''), category, count(*),
       count(first_response_at), count(resolved_at),
       count(*) FILTER (WHERE sla_result = 'early'),
       count(*) FILTER (WHERE sla_result = 'on_time'),
       count(*) FILTER (WHERE sla_result = 'late')
FROM tickets GROUP BY 1, 2, 3"""


_REBUILD_BINS: Final = """
INSERT INTO review_ticket_bins
SELECT k.month, a.agency, a.category, m.measure, review_bin(m.seconds), count(*)
FROM (SELECT date_trunc('month', opened_at AT TIME ZONE %(zone)s)::date AS month,
             coalesce(agency, '') AS agency, category, response_working_s, resolution_working_s
      FROM tickets) AS k
CROSS JOIN LATERAL (VALUES ('r'::"char", k.response_working_s),
                           ('s'::"char", k.resolution_working_s)) AS m (measure, seconds)
CROSS JOIN LATERAL (VALUES (k.agency, k.category), (k.agency, '*'), ('*', k.category),
                           ('*', '*')) AS a (agency, category)
WHERE m.seconds IS NOT NULL
GROUP BY 1, 2, 3, 4, 5"""


_FOLD_DAYS: Final = """
WITH moved AS (DELETE FROM review_ticket_days_delta RETURNING *)
INSERT INTO review_ticket_days AS t
SELECT day, agency, category, sum(received), sum(responded), sum(resolved), sum(early),
       sum(on_time), sum(late)
FROM moved GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (day, agency, category) DO UPDATE SET
    received = t.received + EXCLUDED.received, responded = t.responded + EXCLUDED.responded,
    resolved = t.resolved + EXCLUDED.resolved, early = t.early + EXCLUDED.early,
    on_time = t.on_time + EXCLUDED.on_time, late = t.late + EXCLUDED.late"""


_FOLD_BINS: Final = """
WITH moved AS (DELETE FROM review_ticket_bins_delta RETURNING *)
INSERT INTO review_ticket_bins AS t
SELECT month, agency, category, measure, bin, sum(n) FROM moved
GROUP BY 1, 2, 3, 4, 5 ORDER BY 2, 1, 3, 4, 5
ON CONFLICT (agency, month, category, measure, bin) DO UPDATE SET n = t.n + EXCLUDED.n"""


# Dossier indicators per local month and agency (migration 0012): the received figures of
# the dossiers accepted in the month, the finished ones of those whose result came out in it.
_DOSSIER_MONTH_PARTS: Final = """
r AS (
  SELECT {month_of_accepted} AS month, d.agency, count(*) AS received,
         count(*) FILTER (WHERE d.channel = 'online') AS online,
         count(*) FILTER (WHERE d.online_level = 'partial') AS partial,
         count(*) FILTER (WHERE d.online_level = 'full_process') AS full_process,
         count(*) FILTER (WHERE d.paid_online OR {fee}) AS with_fee,
         count(*) FILTER (WHERE d.paid_online) AS paid,
         count(*) FILTER (WHERE d.digitised) AS digitised
  FROM {accepted} GROUP BY 1, 2),
f AS (
  SELECT {month_of_finished} AS month, d.agency, count(*) AS ended,
         count(*) FILTER (WHERE d.result IS NOT NULL) AS finished,
         count(*) FILTER (WHERE d.result = 'early') AS early,
         count(*) FILTER (WHERE d.result = 'on_time') AS on_time,
         count(*) FILTER (WHERE d.result = 'late') AS late,
         coalesce(sum(d.used_working_s) FILTER (WHERE d.result IS NOT NULL), 0) AS used_s,
         count(d.used_working_s) FILTER (WHERE d.result IS NOT NULL) AS used_n
  FROM {finished} GROUP BY 1, 2)"""


_DOSSIER_MONTH_VALUES: Final = """
SELECT month, agency, coalesce(r.received, 0), coalesce(r.online, 0), coalesce(r.partial, 0),
       coalesce(r.full_process, 0), coalesce(r.with_fee, 0), coalesce(r.paid, 0),
       coalesce(r.digitised, 0), coalesce(f.ended, 0), coalesce(f.finished, 0),
       coalesce(f.early, 0), coalesce(f.on_time, 0), coalesce(f.late, 0),
       coalesce(f.used_s, 0), coalesce(f.used_n, 0)"""


_FEE_EVENT: Final = """EXISTS (SELECT FROM dossier_events e WHERE e.dossier_id = d.dossier_id
                AND e.event IN ('fee_requested', 'fee_paid'))"""


_REBUILD_DOSSIERS: Final = (
    "WITH"
    + _DOSSIER_MONTH_PARTS.format(
        month_of_accepted="date_trunc('month', d.accepted_at AT TIME ZONE %(zone)s)::date",
        month_of_finished="date_trunc('month', d.finished_at AT TIME ZONE %(zone)s)::date",
        fee="fee.dossier_id IS NOT NULL",
        accepted="""dossiers d LEFT JOIN (
    SELECT DISTINCT dossier_id FROM dossier_events
    WHERE event IN ('fee_requested', 'fee_paid')) AS fee USING (dossier_id)
  WHERE d.accepted_at IS NOT NULL""",
        finished="dossiers d WHERE d.finished_at IS NOT NULL",
    )
    + "\nINSERT INTO review_dossier_months"
    + _DOSSIER_MONTH_VALUES
    + "\nFROM r FULL JOIN f USING (month, agency)"
)


# The keys the trigger logged, recomputed from their dossiers (one index range each).
_FOLD_DOSSIERS: Final = (
    """WITH moved AS (DELETE FROM review_dossier_dirty RETURNING month, agency),
k AS (
  SELECT DISTINCT month, agency, month::timestamp AT TIME ZONE %(zone)s AS since,
         (month + interval '1 month') AT TIME ZONE %(zone)s AS until
  FROM moved),"""
    + _DOSSIER_MONTH_PARTS.format(
        month_of_accepted="k.month",
        month_of_finished="k.month",
        fee=_FEE_EVENT,
        accepted="k JOIN dossiers d ON d.agency = k.agency AND d.accepted_at >= k.since"
        " AND d.accepted_at < k.until",
        finished="k JOIN dossiers d ON d.agency = k.agency AND d.finished_at >= k.since"
        " AND d.finished_at < k.until",
    )
    + "\nINSERT INTO review_dossier_months AS t"
    + _DOSSIER_MONTH_VALUES
    + """
FROM k LEFT JOIN r USING (month, agency) LEFT JOIN f USING (month, agency)
ORDER BY 1, 2
ON CONFLICT (month, agency) DO UPDATE SET
    received = EXCLUDED.received, online = EXCLUDED.online, partial = EXCLUDED.partial,
    full_process = EXCLUDED.full_process, with_fee = EXCLUDED.with_fee, paid = EXCLUDED.paid,
    digitised = EXCLUDED.digitised, ended = EXCLUDED.ended, finished = EXCLUDED.finished,
    early = EXCLUDED.early, on_time = EXCLUDED.on_time, late = EXCLUDED.late,
    used_s = EXCLUDED.used_s, used_n = EXCLUDED.used_n"""
)


# Citizens' ratings per local month (migration 0019); a row trigger keeps them current after.
_REBUILD_RATINGS: Final = """
INSERT INTO review_rating_months
SELECT date_trunc('month', rated_at AT TIME ZONE %(zone)s)::date, subject, coalesce(agency, ''), topic, count(*),
       count(*) FILTER (WHERE rating = 'satisfied'), count(*) FILTER (WHERE rating = 'normal'),
       count(*) FILTER (WHERE rating = 'not_satisfied')
FROM ratings GROUP BY 1, 2, 3, 4"""


async def refresh(conn: Conn, zone: str) -> bool:
    """Bring the ticket rollups up to date; True when they had to be built from the tickets.

    They are built on first use (and again if the platform's zone changes), with the tickets
    table locked against writers meanwhile; after that, only the changes the triggers logged
    since the last review are folded in. Call outside a transaction (autocommit).
    """
    cur = await conn.execute("SELECT zone FROM review_state")
    row = await cur.fetchone()
    if row is not None and row[0] == zone:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            await conn.execute(_FOLD_DAYS)
            await conn.execute(_FOLD_BINS)
            await conn.execute(_FOLD_DOSSIERS, {"zone": zone})
        return False
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        # No ticket changes while the rollups are rebuilt; from the commit on, the triggers
        # log every change in this zone.
        await conn.execute("LOCK TABLE tickets, dossiers, ratings IN SHARE ROW EXCLUSIVE MODE")
        cur = await conn.execute("SELECT zone FROM review_state")
        row = await cur.fetchone()
        if row is not None and row[0] == zone:
            return False  # another review built them while this one waited
        for table in (
            "review_ticket_days_delta",
            "review_ticket_bins_delta",
            "review_ticket_days",
            "review_ticket_bins",
            "review_dossier_dirty",
            "review_dossier_months",
            "review_rating_months",
        ):
            await conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        await conn.execute("SET LOCAL work_mem = '256MB'")  # one pass over every ticket
        await conn.execute(_REBUILD_DAYS, {"zone": zone})
        await conn.execute(_REBUILD_BINS, {"zone": zone})
        await conn.execute(_REBUILD_DOSSIERS, {"zone": zone})
        await conn.execute(_REBUILD_RATINGS, {"zone": zone})
        await conn.execute("UPDATE review_state SET zone = %s, built = now()", (zone,))
        await conn.execute(
            "ANALYZE review_ticket_days, review_ticket_bins, review_dossier_months,"
            " review_rating_months"
        )
    return True
