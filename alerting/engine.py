"""The SLA engine: warns before a deadline, alerts when it passes, escalates when nobody acts.

Each ticket and dossier carries its next check time (``next_check_at``, indexed where set) and
the next alert level due (``sla_stage``: due_soon → overdue → escalated); a ticket's two live in
the narrow ``ticket_clocks`` (migration 0024), so moving a clock on leaves the ticket row and its
many indexes alone. A tick reads only
the clocks that are due, in batches claimed with ``FOR NO KEY UPDATE SKIP LOCKED`` (a lock
that foreign-key checks of new reports and ticket events pass through), and handles each
batch in one transaction: raise the alerts, write the outbox, move the clocks on. A crash
mid-tick rolls the batch back whole; a second engine skips the rows the first holds; the
unique index on active alerts makes a repeat harmless. So no alert is lost or doubled.

Imported history pages nobody: an alert is raised only if its moment (due soon, the deadline,
the escalation) came after the record arrived (the ticket's first report was received, the
dossier's first event), less ``sla_backfill_grace_s``. Earlier moments pass quietly: the clock
moves on, and a late dossier gets no apology letter for a deadline that was history when it
arrived. Its result (late) is recorded all the same.

Delivery (``alerting.delivery``) runs in the same loop, after the clocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool

from alerting.delivery import deliver_due
from alerting.raising import raise_deadline_alerts
from ioc.alerts.records import resolve_alerts
from ioc.clock import Clock
from ioc.deadlines import DeadlineBook
from ioc.settings import Settings

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[Any]


@dataclass
class TickResult:
    tickets: int = 0
    dossiers: int = 0
    raised: int = 0
    apologies: int = 0
    notified: int = 0
    queued: int = 0
    backfilled: int = 0  # alerts not raised: their moment passed before the record arrived


@dataclass
class _Due:
    """One due clock, as read from tickets or dossiers: what deciding its next step needs."""

    id: str
    stage: str
    deadline: datetime
    due_soon: datetime | None
    last_acted: datetime | None
    arrived: datetime | None = None  # when the record reached the platform
    counting: str = "working"
    agency: str | None = None  # dossiers: for the apology letter
    appointment: datetime | None = None


@dataclass
class _Step:
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (subject id, level)
    suppress: list[str] = field(default_factory=list)  # subjects whose due-soon alert goes
    moves: list[tuple[str, str | None, datetime | None]] = field(default_factory=list)
    late: list[_Due] = field(default_factory=list)
    backfilled: int = 0
    # Office-time arithmetic once per distinct (counting, quiet since) in a batch.
    escalate_at: dict[tuple[str, datetime], datetime] = field(default_factory=dict)


# The due clocks, oldest first, each joined to its ticket by the primary key: a plan led by the
# clocks' index whatever the count of open tickets (a hash join would read every ticket a tick;
# OFFSET 0 keeps the ticket lookup a per-clock index probe).
_CLAIM_TICKETS = """SELECT t.id::text, c.sla_stage, t.deadline_at, t.due_soon_at, t.last_acted_at,
       t.sla_unit, (SELECT f.received_at FROM field_reports f WHERE f.id = t.report_id)
FROM ticket_clocks c
CROSS JOIN LATERAL (SELECT t.id, t.deadline_at, t.due_soon_at, t.last_acted_at, t.sla_unit,
                           t.report_id
                    FROM tickets t WHERE t.id = c.ticket_id OFFSET 0) AS t
WHERE c.next_check_at <= %s
ORDER BY c.next_check_at LIMIT %s
FOR NO KEY UPDATE OF c SKIP LOCKED"""


class SlaEngine:
    """Scans due clocks and delivers alerts; safe to run in several processes at once."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        clock: Clock,
        settings: Settings,
        book: Callable[[], DeadlineBook],
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._settings = settings
        self._book = book
        self._margin = timedelta(seconds=settings.sla_escalate_after_s)
        self._grace = timedelta(seconds=settings.sla_backfill_grace_s)

    async def run(self, extra: Sequence[Callable[[datetime], Any]] = ()) -> None:
        """Tick forever; ``extra`` steps (e.g. the traffic watch) run after each tick."""
        while True:
            try:
                result = await self.tick()
                if result.raised or result.queued:
                    log.info(
                        "sla: %d alerts raised, %d deliveries queued, %d apology letters",
                        result.raised,
                        result.queued,
                        result.apologies,
                    )
                for step in extra:
                    await step(self._clock.now())
            except (psycopg.Error, OSError) as exc:
                log.warning("sla: tick failed (%s); retrying next tick", exc)
            except Exception:
                log.exception("sla: tick failed; retrying next tick")
            await self._clock.sleep(self._settings.sla_tick_s)

    async def tick(self, now: datetime | None = None) -> TickResult:
        """Handle every clock due by ``now`` (batch by batch), then deliver due alerts."""
        now = now or self._clock.now()
        result = TickResult()
        for kind in ("ticket", "dossier"):
            while True:
                handled = await self._scan(kind, now, result)
                if handled < self._settings.sla_batch:
                    break
        batch = self._settings.sla_batch
        while True:
            delivered = await deliver_due(self._pool, now, batch, self._settings.alert_repeat_s)
            result.notified += delivered.notified
            result.queued += delivered.queued
            if delivered.handled < batch:
                break
        return result

    # -- scanning ---------------------------------------------------------------------------

    async def _scan(self, kind: str, now: datetime, result: TickResult) -> int:
        async with self._pool.connection() as conn, conn.transaction():
            due = await (self._due_tickets if kind == "ticket" else self._due_dossiers)(conn, now)
            if not due:
                return 0
            step = _Step()
            for clock in due:
                self._advance(clock, now, step)
            raised = await self._raise(conn, kind, step.alerts, now)
            await resolve_alerts(
                conn, kind, step.suppress, now, "suppressed", rule="deadline", levels=["due_soon"]
            )
            await self._move(conn, kind, step.moves)
            if step.late:
                result.apologies += await self._apologise(conn, step.late, now)
            result.raised += len(raised)
            result.backfilled += step.backfilled
            if kind == "ticket":
                result.tickets += len(due)
            else:
                result.dossiers += len(due)
            return len(due)

    async def _raise(
        self, conn: Conn, kind: str, alerts: Sequence[tuple[str, str]], now: datetime
    ) -> list[int]:
        """Insert the alerts not already active, in one statement; the ids actually raised."""
        return await raise_deadline_alerts(
            conn, kind, alerts, now, self._settings.fallback_agency, self._settings.alert_digest_s
        )

    async def _due_tickets(self, conn: Conn, now: datetime) -> list[_Due]:
        # Binary results: timestamps are decoded several times faster than from text.
        async with conn.cursor(binary=True) as cur:
            await cur.execute(_CLAIM_TICKETS, (now, self._settings.sla_batch))
            rows = await cur.fetchall()
        return [
            _Due(r[0], r[1] or "", r[2], r[3], r[4], arrived=r[6], counting=r[5] or "calendar")
            for r in rows
            if r[2] is not None
        ]

    async def _due_dossiers(self, conn: Conn, now: datetime) -> list[_Due]:
        cur = await conn.execute(
            """SELECT d.dossier_id, d.sla_stage, d.deadline_at, d.due_soon_at, d.last_acted_at,
                      coalesce(nullif(d.agency, ''), a.code, %s), d.appointment_at,
                      (SELECT min(e.received_at) FROM dossier_events e
                       WHERE e.dossier_id = d.dossier_id
                         AND e.at >= coalesce(d.registered_at, '-infinity')
                         AND e.at <= d.last_event_at)
               FROM dossiers d LEFT JOIN agencies a ON a.code = d.agency
               WHERE d.next_check_at <= %s
               ORDER BY d.next_check_at LIMIT %s
               FOR NO KEY UPDATE OF d SKIP LOCKED""",
            (self._settings.fallback_agency, now, self._settings.sla_batch),
        )
        return [
            _Due(r[0], r[1] or "", r[2], r[3], r[4], arrived=r[7], agency=r[5], appointment=r[6])
            for r in await cur.fetchall()
            if r[2] is not None
        ]

    def _advance(self, due: _Due, now: datetime, step: _Step) -> None:
        """Raise what is due for one clock and decide its next check (stages only move on)."""
        paging_from = None if due.arrived is None else due.arrived - self._grace

        def pages(moment: datetime) -> bool:
            # A moment that passed before the record arrived is history, not work to chase.
            if paging_from is None or moment >= paging_from:
                return True
            step.backfilled += 1
            return False

        stage = due.stage
        if stage == "due_soon":
            if now < due.deadline:
                if pages(due.due_soon or now):
                    step.alerts.append((due.id, "due_soon"))
                step.moves.append((due.id, "overdue", due.deadline))
                return
            stage = "overdue"
        if stage == "overdue":
            if now < due.deadline:
                step.moves.append((due.id, "overdue", due.deadline))
                return
            step.suppress.append(due.id)
            if pages(due.deadline):
                step.alerts.append((due.id, "overdue"))
                if due.agency is not None:  # a dossier: its apology letter
                    step.late.append(due)
            stage = "escalated"
        if stage == "escalated":
            quiet_since = max(due.deadline, due.last_acted or due.deadline)
            # The margin counts like the clock does: office time for working-time policies.
            counting: Literal["working", "calendar"] = (
                "working" if due.counting == "working" else "calendar"
            )
            escalate_at = step.escalate_at.get((counting, quiet_since))
            if escalate_at is None:
                escalate_at = self._book().add(counting, quiet_since, self._margin.total_seconds())
                step.escalate_at[(counting, quiet_since)] = escalate_at
            if now < escalate_at:
                step.moves.append((due.id, "escalated", escalate_at))
                return
            if pages(escalate_at):
                step.alerts.append((due.id, "escalated"))
        step.moves.append((due.id, None, None))

    @staticmethod
    async def _move(
        conn: Conn, kind: str, moves: Sequence[tuple[str, str | None, datetime | None]]
    ) -> None:
        if not moves:
            return
        if kind == "ticket":
            # The ANY lets the rows be found through the primary key, not by hashing every clock.
            query = """UPDATE ticket_clocks c SET sla_stage = m.stage, next_check_at = m.next
                       FROM unnest(string_to_array(%(id)s, ','),
                                   string_to_array(%(stage)s, ',', ''),
                                   %(next)b::timestamptz[]) AS m(id, stage, next)
                       WHERE c.ticket_id = m.id::bigint
                         AND c.ticket_id = ANY(string_to_array(%(id)s, ',')::bigint[])"""
        else:
            query = """UPDATE dossiers d SET sla_stage = m.stage, next_check_at = m.next
                       FROM unnest(%(id)b::text[], %(stage)b::text[], %(next)b::timestamptz[])
                           AS m(id, stage, next)
                       WHERE d.dossier_id = m.id AND d.dossier_id = ANY(%(id)b::text[])"""
        ids, stages, nexts = (list(column) for column in zip(*moves, strict=True))
        params: dict[str, Any]
        if kind == "ticket":
            # Stages are words or None, sent as the empty string (one lone None is sent as ''
            # and split into no items: unnest pads the shorter array with NULL all the same).
            params = {"id": ",".join(ids), "stage": ",".join(s or "" for s in stages)}
        else:
            params = {"id": ids, "stage": stages}
        await conn.execute(query, params | {"next": nexts})

    async def _apologise(self, conn: Conn, late: Sequence[_Due], now: datetime) -> int:
        """Form 04: an apology letter with a new appointment date for each late dossier."""
        office = self._book().office
        days = self._settings.apology_extension_days
        rows = [
            (
                d.id,
                now,
                d.agency or "",
                d.appointment or d.deadline,
                office.add_working_days(now, days),
                f"Hồ sơ quá hạn giải quyết (hạn {d.deadline.astimezone(office.tz):%d/%m/%Y %H:%M}); "
                f"hẹn lại ngày trả kết quả sau {days} ngày làm việc.",
            )
            for d in late
        ]
        cur = await conn.execute(
            """INSERT INTO dossier_apologies (dossier_id, issued_at, agency, old_appointment_at,
                                              new_appointment_at, reason)
               SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::text[],
                                    %b::timestamptz[], %b::timestamptz[], %b::text[])
               ON CONFLICT (dossier_id, old_appointment_at) DO NOTHING RETURNING id""",
            tuple(list(column) for column in zip(*rows, strict=True)),
        )
        return len(await cur.fetchall())

    # -- delivery ---------------------------------------------------------------------------
