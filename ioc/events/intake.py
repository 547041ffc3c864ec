"""The ingest use case: decode, check, and store events; say exactly what happened to each."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ioc import ratings
from ioc.auth import INGEST_ROLES, Principal, Role
from ioc.clock import Clock
from ioc.deadlines import DeadlineBook
from ioc.dossiers import refold
from ioc.errors import InvalidInput
from ioc.events import readings
from ioc.events.coalesce import Coalescer, isolate
from ioc.events.kinds import DossierEvent, Event, Feedback, FieldReport, TrafficCount
from ioc.events.refusal import as_invalid_input, column_and_reason, is_refusal
from ioc.events.rules import NUL_REASON, EventRules, Problem, nul_field
from ioc.events.validation import Decoded, Rejection, check_batch, decode_one, reject_lines
from ioc.media import records as media_records
from ioc.store.reference import ReferenceData
from ioc.store.writer import EventWriter, Spans, Written
from ioc.tickets.filing import store_reports
from ioc.tickets.opening import TicketDesk

# Bodies larger than this are decoded and checked in a worker thread, off the event loop. The
# hand-off costs about 30 % of batch throughput (bench ingest, 5,000-reading batches of ~750 KB),
# so ordinary batches stay on the loop (a few ms each) and only large ones move.
_INLINE_BYTES = 1024 * 1024
# Rounds of taking out the events the database refuses before a batch write gives up.
_ISOLATION_ROUNDS = 3

# (kind, source, outcome, count) -> None; outcome is accepted, duplicate or rejected.
Observer = Callable[[str, str, str, int], None]


def _no_observer(kind: str, source: str, outcome: str, count: int) -> None:
    return None


@dataclass(frozen=True)
class BatchResult:
    accepted: int
    duplicate_lines: tuple[int, ...]
    rejected: tuple[Rejection, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": len(self.duplicate_lines),
            "rejected": len(self.rejected),
            "duplicate_lines": list(self.duplicate_lines),
            "errors": [r.as_dict() for r in self.rejected],
        }


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of one submitted event: stored or a repeat, and for a field report stored
    just now (with tickets on) its public lookup code, read in the write's own transaction."""

    stored: bool
    lookup_code: str | None = None


# (source, external_id) -> lookup code, filled by the ticket desk as reports are stored.
Codes = dict[tuple[str, str], str]


def _report_key(event: Event) -> tuple[str, str]:
    """A field report's (source, external_id), as the ticket desk keys its codes."""
    if isinstance(event, FieldReport) and event.source is not None:
        return event.source, event.external_id
    return "", ""


def _tag(kind: type[Any]) -> str:
    return kind.__struct_config__.tag  # type: ignore[no-any-return]


def _grouped(
    events: Sequence[Event], numbers: Sequence[int]
) -> tuple[dict[type[Any], list[Event]], dict[type[Any], list[int]]]:
    """The events and their numbers by kind (a batch is mostly of one kind: then no sorting)."""
    if not events:
        return {}, {}
    kinds = set(map(type, events))  # in C: most batches are of one kind
    if len(kinds) == 1:
        (only,) = kinds
        return {only: list(events)}, {only: list(numbers)}
    groups: dict[type[Any], list[Event]] = defaultdict(list)
    lines: dict[type[Any], list[int]] = defaultdict(list)
    for line, event in zip(numbers, events, strict=True):
        groups[type(event)].append(event)
        lines[type(event)].append(line)
    return groups, lines


class Intake:
    """Takes events from any adapter (HTTP, WebSocket, replay) the same way."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        writer: EventWriter,
        reference: ReferenceData,
        rules: EventRules,
        max_batch_events: int,
        observe: Observer = _no_observer,
        desk: TicketDesk | None = None,
        book: Callable[[], DeadlineBook] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._pool = pool
        self._writer = writer
        self._reference = reference
        self._rules = rules
        self._max_batch = max_batch_events
        self._observe = observe
        self._desk = desk
        self._book = book
        self._clock = clock
        self._singles: Coalescer[Event, Receipt] = Coalescer(self._write_group, isolable=is_refusal)

    async def batch(
        self, body: bytes | bytearray, content_type: str | None, who: Principal
    ) -> BatchResult:
        """Store every valid event of a batch in one transaction; report each refused line."""
        who.require(INGEST_ROLES)
        args = (body, content_type, self._rules, self._keyed_source(who), self._max_batch)
        if len(body) > _INLINE_BYTES:
            checked = await asyncio.to_thread(check_batch, *args)
        else:
            checked = check_batch(*args)
        async with self._pool.connection() as conn:
            checked = await self._check_sensors(conn, checked)
            checked = await self._check_ratings(conn, checked)
            checked, duplicates = await self._store_batch(conn, checked)
        result = BatchResult(
            len(checked.events) - len(duplicates),
            tuple(sorted(duplicates)),
            tuple(sorted(checked.rejected, key=lambda r: r.line)),
        )
        self._count(checked, result, who)
        return result

    async def _store_batch(self, conn: Any, checked: Decoded) -> tuple[Decoded, list[int]]:
        """Write a batch's events in one transaction, leaving out any the database refuses."""
        spans: Spans | None = await self._prepare(conn, checked.events)
        for _ in range(_ISOLATION_ROUNDS):
            try:
                return checked, await self._store(conn, checked.events, checked.lines, spans=spans)
            except Exception as exc:
                if not is_refusal(exc) or not checked.events:
                    raise
                checked = await self._refuse(conn, checked)
                spans = None  # taken over the events before the refusals
        return checked, await self._store(conn, checked.events, checked.lines)

    async def _refuse(self, conn: Any, checked: Decoded) -> Decoded:
        """Find the events the database refuses, trying halves in transactions rolled back."""
        pairs = list(zip(checked.lines, checked.events, strict=True))

        async def attempt(part: Sequence[tuple[int, Event]]) -> list[None]:
            async with conn.transaction(force_rollback=True):
                await self._store(conn, [e for _, e in part], [line for line, _ in part])
            return [None] * len(part)

        outcomes = await isolate(pairs, attempt, is_refusal)
        for outcome in outcomes:
            if outcome is not None and not is_refusal(outcome):
                raise outcome
        return reject_lines(
            checked,
            (
                (line, *column_and_reason(outcome))
                for (line, _), outcome in zip(pairs, outcomes, strict=True)
                if outcome is not None
            ),
        )

    async def one(self, body: bytes | bytearray, who: Principal) -> bool:
        """Store one event; True if stored, False if it was a duplicate. Raises on bad input."""
        return (await self.submit(decode_one(body), who)).stored

    async def submit(self, event: Event, who: Principal) -> Receipt:
        """Store one already-decoded event (from any adapter): stored or a repeat, and a new
        field report's lookup code. Raises on bad input."""
        who.require(INGEST_ROLES)
        try:
            nul = nul_field(event)
            if nul is not None:
                raise Problem(nul, NUL_REASON)
            event = self._rules.check(event, self._keyed_source(who))
        except Problem as problem:
            self._observe(_tag(type(event)), self._source_of(event, who), "rejected", 1)
            raise InvalidInput(
                f"{problem.field}: {problem.reason}" if problem.field else problem.reason,
                [{"field": problem.field, "reason": problem.reason}],
            ) from None
        if isinstance(event, TrafficCount) and not self._reference.has_sensor(event.sensor_id):
            async with self._pool.connection() as conn:
                unknown = await self._reference.unknown_sensors(conn, (event.sensor_id,))
            if unknown:
                reason = f"sensor {event.sensor_id!r} is not registered"
                raise InvalidInput(
                    f"sensor_id: {reason}", [{"field": "sensor_id", "reason": reason}]
                )
        if ratings.is_rating(event):
            async with self._pool.connection() as conn:
                refused = await ratings.refusals(conn, [1], [event])
            if refused:
                self._observe(_tag(type(event)), self._source_of(event, who), "rejected", 1)
                _, name, reason = refused[0]
                raise InvalidInput(f"{name}: {reason}", [{"field": name, "reason": reason}])
        try:
            receipt = await self._singles.submit(event)
        except Exception as exc:
            if not is_refusal(exc):
                raise
            self._observe(_tag(type(event)), self._source_of(event, who), "rejected", 1)
            raise as_invalid_input(exc) from None
        self._observe(
            _tag(type(event)),
            self._source_of(event, who),
            "accepted" if receipt.stored else "duplicate",
            1,
        )
        return receipt

    async def _write_group(self, events: Sequence[Event]) -> list[Receipt]:
        """Write concurrently submitted single events in one transaction; each one's receipt."""
        codes: Codes = {}
        async with self._pool.connection() as conn:
            spans = await self._prepare(conn, events)
            if readings.one_statement(events):
                duplicates = await readings.write_group(conn, events)
            else:
                stored = await self._store(conn, events, range(len(events)), codes, spans)
                duplicates = set(stored)
        return [
            Receipt(index not in duplicates, codes.get(_report_key(e)))
            for index, e in enumerate(events)
        ]

    async def _prepare(self, conn: Any, events: Sequence[Event]) -> Spans:
        """Create what the events' writes need (partitions), outside their transaction; the
        spans of time taken on the way."""
        groups, _ = _grouped(events, range(len(events)))
        return await self._writer.prepare(conn, groups)

    async def _store(
        self,
        conn: Any,
        events: Sequence[Event],
        numbers: Sequence[int],
        codes: Codes | None = None,
        spans: Spans | None = None,
    ) -> list[int]:
        """Write events (numbered by their lines) in one transaction; the duplicates' numbers.
        The new field reports' lookup codes go into ``codes`` when given; ``spans`` are those
        ``_prepare`` took over these very events."""
        groups, lines = _grouped(events, numbers)
        duplicates: list[int] = []
        rated: list[Event] = []
        async with conn.transaction():
            for kind, group in groups.items():
                if kind is FieldReport and self._desk is not None:  # stored with their tickets
                    written = await store_reports(
                        conn,
                        self._writer,
                        self._desk,
                        group,  # type: ignore[arg-type]
                        lines[kind],
                        codes,
                    )
                else:
                    known = spans.get(kind) if spans else None
                    written = await self._writer.write_batch(conn, kind, group, lines[kind], known)
                duplicates.extend(written.duplicate_lines)
                await self._link_media(conn, kind, group, lines[kind], written)
                await readings.announce(conn, kind, group, lines[kind], written)
                await self._fold_dossiers(conn, kind, group, lines[kind], written)
                if kind in (Feedback, DossierEvent):
                    rated.extend(
                        e for e in written.fresh(group, lines[kind]) if ratings.is_rating(e)
                    )
            if rated:  # after the fold: a dossier's rating reads its agency and procedure
                await ratings.record(conn, rated)
        return duplicates

    @staticmethod
    async def _link_media(
        conn: Any,
        kind: type[Any],
        events: Sequence[Event],
        lines: Sequence[int],
        written: Written,
    ) -> None:
        """Stored field reports take their uploaded photos in the same transaction."""
        if kind is not FieldReport:
            return
        fresh = [
            e for e in written.fresh(events, lines) if isinstance(e, FieldReport) and e.media_ids
        ]
        await media_records.link(conn, fresh)

    async def _fold_dossiers(
        self,
        conn: Any,
        kind: type[Any],
        events: Sequence[Event],
        lines: Sequence[int],
        written: Written,
    ) -> None:
        """Stored dossier events update their dossiers' state and clocks in the same transaction."""
        if self._book is None or kind is not DossierEvent:
            return
        touched = [
            e.dossier_id for e in written.fresh(events, lines) if isinstance(e, DossierEvent)
        ]
        now = self._clock.now() if self._clock else datetime.now(UTC)
        await refold(conn, self._book(), touched, now)

    @staticmethod
    async def _check_ratings(conn: Any, checked: Decoded) -> Decoded:
        """Refuse the ratings of reports and dossiers that have no result yet."""
        if set(map(type, checked.events)) <= {TrafficCount} or not any(
            ratings.is_rating(e) for e in checked.events
        ):
            return checked
        return reject_lines(checked, await ratings.refusals(conn, checked.lines, checked.events))

    async def _check_sensors(self, conn: Any, checked: Decoded) -> Decoded:
        ids = {e.sensor_id for e in checked.events if type(e) is TrafficCount}
        unknown = await self._reference.unknown_sensors(conn, ids) if ids else set()
        if not unknown:
            return checked
        return reject_lines(
            checked,
            (
                (line, "sensor_id", f"sensor {e.sensor_id!r} is not registered")
                for line, e in zip(checked.lines, checked.events, strict=True)
                if isinstance(e, TrafficCount) and e.sensor_id in unknown
            ),
        )

    @staticmethod
    def _keyed_source(who: Principal) -> str | None:
        return who.source if who.role is Role.SOURCE else None

    @staticmethod
    def _source_of(event: Event, who: Principal) -> str:
        return getattr(event, "source", None) or who.source or who.label or "admin"

    def _count(self, checked: Decoded, result: BatchResult, who: Principal) -> None:
        # Counted by (kind, the event's own source, whether a repeat); named after.
        counted: Counter[tuple[type[Any], str | None, bool]] = Counter()
        if set(map(type, checked.events)) <= {TrafficCount}:
            # Readings (by the thousand) carry no source of their own: counted without a loop,
            # and with no zero count, as when counted one by one.
            repeats = len(result.duplicate_lines)
            counted[(TrafficCount, None, False)] = len(checked.events) - repeats
            counted[(TrafficCount, None, True)] = repeats
            counted = +counted
        else:
            duplicate = set(result.duplicate_lines)
            counted = Counter(
                (type(event), getattr(event, "source", None), line in duplicate)
                for line, event in zip(checked.lines, checked.events, strict=True)
            )
        source = who.source or who.label or "admin"
        tally: Counter[tuple[str, str, str]] = Counter()
        for (kind, own, repeat), count in counted.items():
            tally[(_tag(kind), own or source, "duplicate" if repeat else "accepted")] += count
        if result.rejected:
            tally[("unknown", source, "rejected")] += len(result.rejected)
        for (name, src, outcome), count in tally.items():
            self._observe(name, src, outcome, count)
