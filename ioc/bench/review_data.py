"""A year of plausible tickets and dossiers for timing the leaders' review, loaded by COPY.

Tickets come with their field reports (a ticket always has one) and with the SLA columns the
SLA engine would have filled in; their office times are drawn directly rather than counted
on the calendar (the figures are for timing the queries, not for reading). Dossier events
are folded into dossiers by the platform's own fold, as ingest does it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import psycopg

from ioc.deadlines import DeadlineBook
from ioc.dossiers import refold
from ioc.store.partitions import PartitionManager

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
START = datetime(2024, 9, 2, tzinfo=ZONE)  # a Monday
DAYS = 364
OFFICE_DAY_S = 7.5 * 3600
_FOLD_CHUNK = 5_000  # dossiers folded per transaction
# Office seconds per calendar second, on average over a week (7.5 h on 5 days of 7).
_OFFICE_SHARE = 7.5 / 24 * 5 / 7
CATEGORIES = (
    ("moi_truong", 48, 0.25),
    ("giao_thong", 24, 0.14),
    ("ha_tang", 72, 0.12),
    ("chieu_sang", 48, 0.08),
    ("cap_thoat_nuoc", 24, 0.1),
    ("cay_xanh", 48, 0.06),
    ("trat_tu_do_thi", 72, 0.1),
    ("xay_dung", 120, 0.04),
    ("an_ninh_trat_tu", 24, 0.04),
    ("an_toan_thuc_pham", 72, 0.03),
    ("khac", 120, 0.04),
)
AGENCIES = (
    ("so-xd", "Sở Xây dựng"),
    ("so-nnmt", "Sở Nông nghiệp và Môi trường"),
    ("so-tp", "Sở Tư pháp"),
    ("so-yt", "Sở Y tế"),
    ("ca-tp", "Công an thành phố Huế"),
    ("hepco", "Công ty CP Môi trường và Công trình đô thị Huế"),
    ("huewaco", "Công ty CP Cấp nước Thừa Thiên Huế"),
    *((f"ubnd-p{n:02d}", f"UBND phường số {n}") for n in range(1, 41)),
)
PROCEDURES = (
    ("1.001612", 5),
    ("1.000894", 3),
    ("2.000908", 1),
    ("1.004227", 15),
    ("1.009972", 20),
    ("2.001711", 7),
    ("1.003348", 10),
    ("1.001193", 5),
)


@dataclass(frozen=True)
class ReviewData:
    """What was loaded, and the moment the review is asked at (the end of the data)."""

    tickets: int
    dossier_events: int
    dossiers: int
    since: datetime
    until: datetime
    now: datetime


def _utc(start: datetime, seconds: np.ndarray[Any, Any]) -> pd.Series[Any]:
    base = pd.Timestamp(start).tz_convert("UTC")
    return pd.Series(base + pd.to_timedelta(seconds, unit="s"))


def _csv_chunks(frame: pd.DataFrame, rows: int = 200_000) -> Iterator[str]:
    for first in range(0, len(frame), rows):
        buffer = io.StringIO()
        frame.iloc[first : first + rows].to_csv(
            buffer, header=False, index=False, na_rep="", date_format="%Y-%m-%d %H:%M:%S+00"
        )
        yield buffer.getvalue()


async def _copy(conn: psycopg.AsyncConnection[Any], table: str, frame: pd.DataFrame) -> None:
    columns = ", ".join(frame.columns)
    async with (
        conn.cursor() as cur,
        cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy,
    ):
        for chunk in _csv_chunks(frame):
            await copy.write(chunk)


def ticket_frames(count: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(field reports, tickets) for ``count`` tickets opened over DAYS days from START."""
    rng = np.random.default_rng(seed)
    span = DAYS * 86_400
    opened_s = np.sort(rng.uniform(0, span, count))
    codes = np.array([c for c, _, _ in CATEGORIES])
    weights = np.array([w for _, _, w in CATEGORIES])
    pick = rng.choice(len(CATEGORIES), count, p=weights / weights.sum())
    category = codes[pick]
    allowed_h = np.array([h for _, h, _ in CATEGORIES], dtype=float)[pick]
    agency = np.array([a for a, _ in AGENCIES])[rng.integers(0, len(AGENCIES), count)]
    lon = rng.uniform(107.50, 107.68, count)
    lat = rng.uniform(16.40, 16.52, count)
    reports = pd.DataFrame(
        {
            "source": "bench",
            "external_id": [f"R{n}" for n in range(count)],
            "category": category,
            "description": "Phản ánh hiện trường (dữ liệu đo hiệu năng)",
            "lon": lon.round(6),
            "lat": lat.round(6),
            "occurred_at": _utc(START, opened_s),
            "received_at": _utc(START, opened_s + 5),
        }
    )
    # Office time to respond and to resolve; calendar time follows from the office share.
    response_w = rng.lognormal(np.log(2 * 3600), 1.0, count)
    resolution_w = response_w + rng.lognormal(np.log(4 * 3600), 0.9, count)
    responded_s = opened_s + response_w / _OFFICE_SHARE
    resolved_s = opened_s + resolution_w / _OFFICE_SHARE
    deadline_s = opened_s + allowed_h * 3600
    outcome = rng.random(count)
    rejected = outcome < 0.02
    resolved = ~rejected & (resolved_s < span) & (outcome < 0.985)
    responded = (responded_s < span) & (resolved | (outcome < 0.99))
    closed = resolved & (resolved_s + 86_400 < span) & (rng.random(count) < 0.9)
    state = np.where(
        rejected,
        "rejected",
        np.where(
            closed,
            "closed",
            np.where(resolved, "resolved", np.where(responded, "in_progress", "new")),
        ),
    )
    tz = ZONE
    deadline_day = (_utc(START, deadline_s).dt.tz_convert(tz).dt.normalize()).to_numpy()
    resolved_day = (_utc(START, resolved_s).dt.tz_convert(tz).dt.normalize()).to_numpy()
    result = np.where(
        resolved_s > deadline_s,
        "late",
        np.where(resolved_day < deadline_day, "early", "on_time"),
    )

    def when(mask: np.ndarray[Any, Any], seconds: np.ndarray[Any, Any]) -> pd.Series[Any]:
        out = _utc(START, seconds)
        return out.where(mask)

    last_s = np.where(closed, resolved_s + 86_400, np.where(resolved, resolved_s, opened_s + 5))
    tickets = pd.DataFrame(
        {
            "id": np.arange(1, count + 1),
            "report_id": np.arange(1, count + 1),
            "category": category,
            "state": state,
            "agency": agency,
            "routing": '{"how": "bench"}',
            "lon": lon.round(6),
            "lat": lat.round(6),
            "opened_at": _utc(START, opened_s),
            "deadline_at": _utc(START, deadline_s),
            "due_soon_at": _utc(START, opened_s + allowed_h * 3600 * 0.75),
            "updated_at": _utc(START, np.minimum(last_s, span)),
            "first_response_at": when(responded, responded_s),
            "resolved_at": when(resolved, resolved_s),
            "closed_at": when(closed, resolved_s + 86_400),
            "sla_unit": "calendar",
            "sla_allowed_s": allowed_h * 3600,
            "response_working_s": pd.Series(response_w.round(1)).where(responded),
            "resolution_working_s": pd.Series(resolution_w.round(1)).where(resolved),
            "sla_result": pd.Series(result).where(resolved),
        }
    )
    return reports, tickets


def dossier_frames(events: int, seed: int) -> pd.DataFrame:
    """About ``events`` dossier events, each dossier's life in order."""
    rng = np.random.default_rng(seed + 1)
    span = DAYS * 86_400
    count = max(1, round(events / 5.7))  # about the mean number of events a dossier has
    registered = np.sort(rng.uniform(0, span, count))
    proc = rng.integers(0, len(PROCEDURES), count)
    legal_days = np.array([d for _, d in PROCEDURES], dtype=float)[proc]
    agency = np.array([a for a, _ in AGENCIES])[rng.integers(0, len(AGENCIES), count)]
    channel = rng.choice(np.array(["online", "counter", "postal"]), count, p=[0.72, 0.25, 0.03])
    online = channel == "online"
    level = np.where(online, np.where(rng.random(count) < 0.5, "partial", "full_process"), "")
    refused = rng.random(count) < 0.03
    supplement = ~refused & (rng.random(count) < 0.15)
    fee = ~refused & (rng.random(count) < 0.3)
    paid_online = fee & online & (rng.random(count) < 0.8)
    digitised = rng.random(count) < 0.9
    accepted = registered + rng.uniform(0.5, 8, count) * 3600
    allowed = legal_days * 7 / 5 * 86_400  # working days in calendar seconds, roughly
    late = rng.random(count) < 0.12
    finish = allowed * np.where(late, rng.uniform(1.03, 1.5, count), rng.uniform(0.35, 0.97, count))
    pause = np.where(supplement, rng.uniform(12, 96, count) * 3600, 0.0)
    processed = accepted + finish + pause
    # Late results go out within a day of processing; the others well before the appointment.
    returned = processed + np.where(
        late, rng.uniform(1, 24, count) * 3600, (allowed - finish) * 0.3
    )
    steps: list[tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any]]] = [
        ("registered", np.ones(count, bool), registered),
        ("refused", refused, accepted),
        ("accepted", ~refused, accepted),
        ("in_processing", ~refused, accepted + finish * 0.03),
        ("supplement_requested", supplement, accepted + finish * 0.25),
        ("supplement_received", supplement, accepted + finish * 0.4 + pause),
        ("fee_requested", fee, accepted + finish * 0.6 + pause),
        ("fee_paid", fee, accepted + finish * 0.9 + pause),
        ("processed", ~refused, processed),
        ("result_returned", ~refused, returned),
    ]
    index_parts, name_parts, at_parts = [], [], []
    for name, mask, at in steps:
        keep = mask & (at < span)
        index_parts.append(np.flatnonzero(keep))
        name_parts.append(np.full(int(keep.sum()), name))
        at_parts.append(at[keep])
    which = np.concatenate(index_parts)
    at_s = np.concatenate(at_parts)
    order = np.lexsort((at_s, which))
    which, at_s, event = which[order], at_s[order], np.concatenate(name_parts)[order]
    dossier_id = np.array([f"H46.{a}-{n:07d}" for n, a in enumerate(agency)])
    step_no = np.arange(len(which)) - np.searchsorted(which, which)
    event_rows = pd.DataFrame(
        {
            "source": "bench",
            "external_id": [f"{d}:{k}" for d, k in zip(dossier_id[which], step_no, strict=True)],
            "dossier_id": dossier_id[which],
            "procedure_code": np.array([p for p, _ in PROCEDURES])[proc[which]],
            "agency": agency[which],
            "event": event,
            "at": _utc(START, at_s),
            "channel": channel[which],
            "online_level": pd.Series(level[which]).replace("", None),
            "appointment_at": _utc(START, (accepted + allowed)[which]).where(
                ~refused[which] & (event != "registered")
            ),
            "paid_online": paid_online[which],
            "digitised": digitised[which],
        }
    )
    return event_rows


# Citizens' ratings (migration 0019): about half of the resolved tickets and 40 % of the
# returned dossiers, a day or so after the result, mostly satisfied. Seeded, so runs compare.
_RATINGS = """
SELECT setseed(0.7);
INSERT INTO ratings (subject, source, subject_id, ticket_id, agency, topic, rating, score,
                     rated_at, external_id)
SELECT 'report', r.source, r.external_id, t.id, t.agency, t.category,
       CASE WHEN x < 0.7 THEN 'satisfied' WHEN x < 0.85 THEN 'normal' ELSE 'not_satisfied' END,
       NULL, t.resolved_at + x * interval '2 days', 'F' || r.external_id
FROM (SELECT t.*, random() AS x, random() AS pick FROM tickets t
      WHERE t.resolved_at IS NOT NULL) AS t
JOIN field_reports r ON r.id = t.report_id
WHERE t.pick < 0.5;
INSERT INTO ratings (subject, source, subject_id, agency, topic, rating, score, rated_at,
                     external_id)
SELECT 'dossier', d.source, d.dossier_id, d.agency, d.procedure_code,
       CASE WHEN x < 0.75 THEN 'satisfied' WHEN x < 0.9 THEN 'normal' ELSE 'not_satisfied' END,
       NULL, d.finished_at + x * interval '2 days', 'F' || d.dossier_id
FROM (SELECT d.*, random() AS x, random() AS pick FROM dossiers d
      WHERE d.state = 'result_returned') AS d
WHERE d.pick < 0.4"""


async def load(
    conn: psycopg.AsyncConnection[Any],
    book: DeadlineBook,
    tickets: int,
    dossier_events: int,
    seed: int = 7,
) -> ReviewData:
    """COPY the tickets and dossier events into an empty, migrated database, fold the
    dossiers from their events as ingest does (``ioc.dossiers.refold``), VACUUM ANALYZE."""
    reports, ticket_rows = ticket_frames(tickets, seed)
    event_rows = dossier_frames(dossier_events, seed)
    backend = await conn.execute("SELECT value FROM ioc_meta WHERE key = 'backend'")
    found = await backend.fetchone()
    if (str(found[0]) if found else "plain") == "plain":
        manager = PartitionManager(enabled=True)
        await manager.load(conn)
        await manager.ensure(conn, "dossier_events", START, START + timedelta(days=DAYS + 1))
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO agencies (code, name_vi) SELECT * FROM unnest(%s::text[], %s::text[])"
            " ON CONFLICT (code) DO NOTHING",
            ([a for a, _ in AGENCIES], [n for _, n in AGENCIES]),
        )
        await _copy(conn, "field_reports", reports)
        cur = await conn.execute(
            "SELECT min(id), max(id) FROM field_reports WHERE source = 'bench'"
        )
        found_ids = await cur.fetchone()
        first, last = found_ids if found_ids is not None else (None, None)
        if first is None or last is None or last - first + 1 != tickets:
            raise RuntimeError("field report ids are not one run; load into an empty database")
        ticket_rows["report_id"] = np.arange(first, last + 1)
        await _copy(conn, "tickets", ticket_rows)
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('tickets', 'id'), (SELECT max(id) FROM tickets))"
        )
        await _copy(conn, "dossier_event_keys", event_rows[["source", "external_id"]])
        await _copy(conn, "dossier_events", event_rows)
    now = START + timedelta(days=DAYS)
    ids = sorted(set(event_rows["dossier_id"]))
    for first_id in range(0, len(ids), _FOLD_CHUNK):
        async with conn.transaction():
            await refold(conn, book, ids[first_id : first_id + _FOLD_CHUNK], now)
    async with conn.transaction():
        await conn.execute(_RATINGS)
    for table in ("field_reports", "tickets", "dossier_events", "dossiers", "ratings"):
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    return ReviewData(
        tickets=tickets,
        dossier_events=len(event_rows),
        dossiers=len(ids),
        since=START,
        until=now,
        now=now,
    )
