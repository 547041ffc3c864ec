"""The demo's citizens rate some of the simulator's resolved tickets, as a source app would.

Every few seconds it reads the simulator's reports whose tickets were resolved since it last
looked (from the demo's start: older history is left as it is), and posts a ``feedback`` event for about half of them (the rest never rate),
mostly satisfied, less so when the ticket was late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime
from typing import Any, Final

import httpx
from psycopg_pool import AsyncConnectionPool

from ioc.clock import Clock

log = logging.getLogger(__name__)

RATED_SHARE: Final = 0.5
_SCORES: Final = (5, 4, 3, 2, 1)
_WEIGHTS: Final = {"late": (15, 20, 25, 20, 20), "other": (55, 25, 10, 5, 5)}
_COMMENTS: Final = {5: "Xử lý nhanh, cảm ơn", 1: "Chưa xử lý triệt để", 2: "Xử lý chậm"}

# Tickets resolved after the cursor: each resolution is offered to its citizen once (a ticket
# reopened and resolved again is offered again).
_RESOLVED: Final = """
SELECT t.resolved_at, r.external_id, t.sla_result
FROM tickets t JOIN field_reports r ON r.ticket_id = t.id
WHERE t.state IN ('resolved', 'closed') AND r.source = %s AND t.resolved_at > %s
ORDER BY t.resolved_at LIMIT 500"""


def ratings_for(
    rows: list[tuple[str, str | None]], rng: random.Random, now: datetime
) -> list[dict[str, Any]]:
    """Feedback events for about RATED_SHARE of the (report id, SLA result) rows."""
    out = []
    for report_id, result in rows:
        if rng.random() >= RATED_SHARE:
            continue
        score = rng.choices(_SCORES, weights=_WEIGHTS["late" if result == "late" else "other"])[0]
        event: dict[str, Any] = {
            "kind": "feedback",
            "report_id": report_id,
            "rating": score,
            "rated_at": now.isoformat(),
        }
        if score in _COMMENTS:
            event["comment"] = _COMMENTS[score]
        out.append(event)
    return out


async def rate_resolved(
    pool: AsyncConnectionPool[Any],
    client: httpx.AsyncClient,
    source: str,
    stop: asyncio.Event,
    seed: int,
    clock: Clock,
    every_s: float = 10.0,
) -> None:
    """Post ratings for newly resolved tickets of ``source`` until ``stop`` is set."""
    rng = random.Random(seed)
    after = clock.now()
    while not stop.is_set():
        after = await rate_once(pool, client, source, after, rng, clock.now())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def rate_once(
    pool: AsyncConnectionPool[Any],
    client: httpx.AsyncClient,
    source: str,
    after: datetime,
    rng: random.Random,
    now: datetime,
) -> datetime:
    """Rate the tickets resolved after ``after``, at ``now``; returns the next cursor."""
    async with pool.connection() as conn:
        cur = await conn.execute(_RESOLVED, (source, after))
        found = await cur.fetchall()
    if not found:
        return after
    events = ratings_for([(str(r[1]), r[2]) for r in found], rng, now)
    if events:
        await _post(client, events)
    last: datetime = max(r[0] for r in found)
    return last


async def _post(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    body = b"\n".join(httpx.Response(200, json=e).content for e in events)
    try:
        answer = await client.post("/v1/events/batch", content=body)
    except httpx.HTTPError as exc:
        log.warning("demo ratings could not post: %s", exc)
        return
    if answer.status_code != 200:
        log.warning("demo ratings: %s %s", answer.status_code, answer.text[:300])
