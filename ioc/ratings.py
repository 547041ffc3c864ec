"""Citizens' ratings: accepted only after the result, kept one per report or dossier.

A rating of a field report (a ``feedback`` event) names the report by its id at the source; it
is accepted once the report's ticket is resolved or closed. A rating of a dossier (a ``rated``
dossier event) is accepted once the dossier's result was returned, before this batch or by an
event of the same batch. Anything else is refused, per event, saying what state was found.

``ratings`` keeps the rating that counts: the latest by ``rated_at`` (ties: the greater external
id). So a citizen who rates again after a reopened ticket is resolved again replaces the first
rating, and a replay of old ratings, in any order, changes nothing. The scale: ``satisfied``,
``normal``, ``not_satisfied``, or 1-5 (4-5 satisfied, 3 normal, 1-2 not satisfied).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import psycopg

from ioc.events.kinds import DossierEvent, Event, Feedback, satisfaction

Conn = psycopg.AsyncConnection[Any]

RATED_TICKET_STATES: Final = frozenset({"resolved", "closed"})
AFTER_RESULT: Final = "a rating is accepted only after the result"


def is_rating(event: Event) -> bool:
    return isinstance(event, Feedback) or (
        isinstance(event, DossierEvent) and event.event == "rated"
    )


async def refusals(
    conn: Conn, lines: Sequence[int], events: Sequence[Event]
) -> list[tuple[int, str, str]]:
    """(line, field, reason) for each rating whose report or dossier has no result yet."""
    feedback = [(n, e) for n, e in zip(lines, events, strict=True) if isinstance(e, Feedback)]
    rated = [
        (n, e)
        for n, e in zip(lines, events, strict=True)
        if isinstance(e, DossierEvent) and e.event == "rated"
    ]
    out: list[tuple[int, str, str]] = []
    if feedback:
        tickets = await _tickets_of(conn, [(str(e.source), e.report_id) for _, e in feedback])
        for line, e in feedback:
            found = tickets.get((str(e.source), e.report_id))
            reason = _ticket_refusal(e, found)
            if reason:
                out.append((line, "report_id", reason))
    if rated:
        returned_here = {
            e.dossier_id
            for e in events
            if isinstance(e, DossierEvent) and e.event == "result_returned"
        }
        in_batch = {e.dossier_id for e in events if isinstance(e, DossierEvent)}
        ids = sorted({d.dossier_id for _, d in rated})
        cur = await conn.execute(
            "SELECT dossier_id, state FROM dossiers WHERE dossier_id = ANY(%s)", (ids,)
        )
        states = {str(d): str(s) for d, s in await cur.fetchall()}
        for line, d in rated:
            state = states.get(d.dossier_id)
            if state == "result_returned" or d.dossier_id in returned_here:
                continue
            if state is not None:
                seen = repr(state)
            elif d.dossier_id in in_batch:
                seen = "new in this batch, with no result returned"
            else:
                seen = "not known"
            reason = f"dossier {d.dossier_id!r} is {seen}; {AFTER_RESULT} is returned"
            out.append((line, "dossier_id", reason))
    return out


async def _tickets_of(
    conn: Conn, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int | None, str | None]]:
    cur = await conn.execute(
        """SELECT k.source, k.external_id, t.id, t.state
           FROM unnest(%b::text[], %b::text[]) AS k(source, external_id)
           JOIN field_reports r ON r.source = k.source AND r.external_id = k.external_id
           LEFT JOIN tickets t ON t.id = r.ticket_id""",
        ([s for s, _ in keys], [x for _, x in keys]),
    )
    return {(str(s), str(x)): (t, st) for s, x, t, st in await cur.fetchall()}


def _ticket_refusal(e: Feedback, found: tuple[int | None, str | None] | None) -> str | None:
    if found is None:
        return f"report {e.report_id!r} of source {e.source!r} is not known"
    ticket, state = found
    if ticket is None or state is None:
        return f"report {e.report_id!r} has no ticket; {AFTER_RESULT} (resolved or closed)"
    if state in RATED_TICKET_STATES:
        return None
    return f"ticket {ticket} is {state!r}; {AFTER_RESULT} (resolved or closed)"


def _latest(rows: list[tuple[Any, ...]], key: slice) -> list[tuple[Any, ...]]:
    """One row per key: the one with the latest (rated_at, external_id), its last two fields."""
    kept: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        k = row[key]
        seen = kept.get(k)
        if seen is None or (row[-2], row[-1]) > (seen[-2], seen[-1]):
            kept[k] = row
    return list(kept.values())


_UPSERT_TAIL: Final = """
ON CONFLICT (subject, source, subject_id) DO UPDATE SET
    ticket_id = EXCLUDED.ticket_id, agency = EXCLUDED.agency, topic = EXCLUDED.topic,
    rating = EXCLUDED.rating, score = EXCLUDED.score, comment = EXCLUDED.comment,
    rated_at = EXCLUDED.rated_at, external_id = EXCLUDED.external_id
WHERE (EXCLUDED.rated_at, EXCLUDED.external_id) > (ratings.rated_at, ratings.external_id)"""


async def record(conn: Conn, events: Sequence[Event]) -> None:
    """Keep the ratings among freshly stored events; call inside the ingest transaction,
    after the dossiers are folded."""
    reports: list[tuple[Any, ...]] = []
    dossiers: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, Feedback):
            word, score = satisfaction(e.rating)
            reports.append(
                (e.source, e.report_id, word, score, e.comment, e.rated_at, e.external_id)
            )
        elif isinstance(e, DossierEvent) and e.event == "rated" and e.rating is not None:
            word, score = satisfaction(e.rating)
            dossiers.append((e.source, e.dossier_id, word, score, e.comment, e.at, e.external_id))
    if reports:
        await conn.execute(
            """INSERT INTO ratings (subject, source, subject_id, ticket_id, agency, topic, rating,
                                    score, comment, rated_at, external_id)
               SELECT 'report', f.source, f.id, t.id, t.agency, t.category, f.rating, f.score,
                      f.comment, f.rated_at, f.external_id
               FROM unnest(%b::text[], %b::text[], %b::text[], %b::int2[], %b::text[],
                           %b::timestamptz[], %b::text[])
                    AS f(source, id, rating, score, comment, rated_at, external_id)
               JOIN field_reports r ON r.source = f.source AND r.external_id = f.id
               JOIN tickets t ON t.id = r.ticket_id"""
            + _UPSERT_TAIL,
            _columns(_latest(reports, slice(0, 2)), 7),
        )
    if dossiers:
        await conn.execute(
            """INSERT INTO ratings (subject, source, subject_id, agency, topic, rating, score,
                                    comment, rated_at, external_id)
               SELECT 'dossier', f.source, f.id, d.agency, d.procedure_code, f.rating, f.score,
                      f.comment, f.rated_at, f.external_id
               FROM unnest(%b::text[], %b::text[], %b::text[], %b::int2[], %b::text[],
                           %b::timestamptz[], %b::text[])
                    AS f(source, id, rating, score, comment, rated_at, external_id)
               JOIN dossiers d ON d.dossier_id = f.id"""
            + _UPSERT_TAIL,
            _columns(_latest(dossiers, slice(0, 2)), 7),
        )


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


async def latest_of_ticket(conn: Conn, ticket_id: int) -> tuple[str, int | None, datetime] | None:
    """The rating that counts among the ticket's reports: (rating, score, rated_at), or None."""
    cur = await conn.execute(
        "SELECT rating, score, rated_at FROM ratings WHERE ticket_id = %s"
        " ORDER BY rated_at DESC LIMIT 1",
        (ticket_id,),
    )
    row = await cur.fetchone()
    return None if row is None else (str(row[0]), row[1], row[2])
