"""The demo's officials at work on the live queue: now and then (at a human pace, on an
injectable clock) one of them takes the next move on an open ticket of their agency: the
agency's first official assigns it to a colleague, who starts and then resolves it (on the
backlog and on what just came in, alike). Every move goes through
``ioc.tickets.actions.act`` as that official, so the history, the SLA clock and the live
notices are the platform's own."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Final

import psycopg

from ioc.auth import Principal
from ioc.clock import Clock
from ioc.errors import Conflict, InvalidInput, NotFound
from ioc.platform import Platform
from ioc.store.users import principal_of
from ioc.tickets.actions import act
from ioc.tickets.states import Action

log = logging.getLogger(__name__)
Conn = psycopg.AsyncConnection[Any]

PACE_S: Final = (15.0, 60.0)  # seconds between two moves, drawn evenly
_AMONG: Final = 25  # the move is made on one of the oldest or the newest open tickets
_RESOLUTIONS: Final = (
    "Đã xử lý xong tại hiện trường.",
    "Đã khắc phục, đề nghị người dân kiểm tra.",
)


class OfficialsAtWork:
    """Moves open tickets along, one move per call of ``step``; ``run`` repeats it."""

    def __init__(
        self,
        platform: Platform,
        clock: Clock,
        rng: random.Random | None = None,
        pace_s: tuple[float, float] = PACE_S,
    ) -> None:
        self._platform = platform
        self._clock = clock
        self._rng = rng or random.Random()
        self._pace = pace_s
        self._people: dict[str, list[Principal]] = {}

    async def _officials(self, conn: Conn) -> dict[str, list[Principal]]:
        cur = await conn.execute(
            "SELECT id, login, name, agency FROM users WHERE role = 'agency'"
            " AND disabled_at IS NULL ORDER BY login"
        )
        people: dict[str, list[Principal]] = {}
        for user_id, login, name, agency in await cur.fetchall():
            people.setdefault(agency, []).append(
                principal_of(user_id, login, name, "agency", agency)
            )
        return people

    async def step(self) -> tuple[int, str, str] | None:
        """Make one move: (ticket, action, who) or None when there is nothing to do."""
        async with self._platform.pool.connection() as conn:
            self._people = self._people or await self._officials(conn)
            if not self._people:
                return None
            # Half the time the backlog (the oldest), half the time what just came in.
            order = "opened_at" if self._rng.random() < 0.5 else "opened_at DESC"
            cur = await conn.execute(
                f"""SELECT id, state, agency, assignee FROM tickets
                    WHERE state IN ('new', 'assigned', 'in_progress', 'reopened')
                      AND agency = ANY(%s)
                    ORDER BY {order} LIMIT %s""",
                (list(self._people), _AMONG),
            )
            candidates = await cur.fetchall()
            if not candidates:
                return None
            ticket, state, agency, assignee = self._rng.choice(candidates)
            people = self._people[agency]
            by_login = {p.login: p for p in people}
            doer = by_login.get(assignee) or self._rng.choice(people)
            if state in ("new", "reopened"):
                worker = self._rng.choice(people)
                action = Action("assign", assignee=worker.login)
                doer = people[0]
            elif state == "assigned":
                action = Action("start")
            else:
                action = Action("resolve", self._rng.choice(_RESOLUTIONS))
            try:
                await act(conn, doer, ticket, action, self._clock.now(), self._platform.book)
            except (Conflict, InvalidInput, NotFound) as exc:  # moved meanwhile by someone else
                log.info("demo official skipped ticket %s: %s", ticket, exc)
                return None
        return ticket, action.name, doer.label

    async def run(self, stop: asyncio.Event) -> None:
        """Keep working until ``stop`` is set."""
        while not stop.is_set():
            await self._clock.sleep(self._rng.uniform(*self._pace))
            if stop.is_set():
                return
            try:
                await self.step()
            except Exception:  # the demo goes on; the log says why a move failed
                log.exception("a demo official's move failed")
