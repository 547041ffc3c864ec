"""``ioc replay``: stream an NDJSON or CSV file of events to a running server.

Batches go to ``POST /v1/events/batch``. The pace is either a rate (events per second) or the
events' own timestamps sped up by a factor. Refused lines are reported with their line number
in the file; a busy or unreachable server is retried with backoff, and because ingest is
idempotent a retried batch is never stored twice.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm import tqdm

from ioc.errors import InvalidInput
from ioc.events import KINDS

_TIME_FIELDS = ("observed_at", "occurred_at", "at")


@dataclass(frozen=True)
class ReplayOptions:
    url: str
    key: str
    rate: float | None = None
    speed: float | None = None
    batch_size: int = 1000
    kind: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # event field -> CSV column
    constants: dict[str, str] = field(default_factory=dict)  # event field -> fixed value
    zone: str = "Asia/Ho_Chi_Minh"


@dataclass
class Summary:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = (
            f"sent {self.sent}, accepted {self.accepted}, duplicates {self.duplicates}, "
            f"rejected {len(self.rejected)}"
        )
        shown = self.rejected[:20]
        more = len(self.rejected) - len(shown)
        return "\n".join([head, *shown, *([f"… and {more} more"] if more > 0 else [])])


@dataclass(frozen=True)
class Line:
    number: int
    event: dict[str, Any]


def read_ndjson(path: Path) -> Iterator[Line]:
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                try:
                    yield Line(number, json.loads(text))
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"{path}:{number}: malformed JSON: {exc.msg}") from None


def read_csv(path: Path, options: ReplayOptions) -> Iterator[Line]:
    """Rows as events: cells are converted to each field's type; empty cells are left out."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        wanted = set(options.columns.values()) - set(reader.fieldnames or ())
        if wanted:
            raise InvalidInput(
                f"{path}: no column {', '.join(sorted(wanted))}; columns are: "
                + ", ".join(reader.fieldnames or ())
            )
        renamed = {column: name for name, column in options.columns.items()}
        for number, row in enumerate(reader, start=2):
            event: dict[str, Any] = {
                renamed.get(column, column): value
                for column, value in row.items()
                if value not in ("", None)
            }
            event.update(options.constants)
            if options.kind:
                event.setdefault("kind", options.kind)
            yield Line(number, _coerce(event))


def _coerce(event: dict[str, Any]) -> dict[str, Any]:
    """Cells are text: give each field its type where the text allows it.

    A cell that does not convert is sent as it is, so the server names exactly what is wrong.
    """
    kind = KINDS.get(str(event.get("kind")))
    if kind is None:
        return event
    out = dict(event)
    for info in msgspec.structs.fields(kind):
        if info.encode_name in out and info.encode_name != "kind":
            try:
                value = msgspec.convert(out[info.encode_name], info.type, strict=False)
            except msgspec.ValidationError:
                continue
            out[info.encode_name] = msgspec.to_builtins(value)
    return out


def read_events(path: Path, options: ReplayOptions) -> Iterator[Line]:
    if path.suffix.lower() == ".csv":
        return read_csv(path, options)
    return read_ndjson(path)


def _moment(event: dict[str, Any], zone: ZoneInfo) -> datetime | None:
    for name in _TIME_FIELDS:
        value = event.get(name)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return None
            return moment if moment.tzinfo else moment.replace(tzinfo=zone)
    return None


class Pacer:
    """Decides how long to wait before an event may be sent."""

    def __init__(self, options: ReplayOptions, monotonic: Callable[[], float]) -> None:
        self._rate = options.rate
        self._speed = options.speed
        self._zone = ZoneInfo(options.zone)
        self._monotonic = monotonic
        self._start = monotonic()
        self._first: datetime | None = None
        self._count = 0

    def wait_for(self, event: dict[str, Any]) -> float:
        """Seconds from now until ``event`` is due (0 when due already)."""
        self._count += 1
        elapsed = self._monotonic() - self._start
        if self._rate:
            return max(0.0, (self._count - 1) / self._rate - elapsed)
        if self._speed:
            moment = _moment(event, self._zone)
            if moment is None:
                return 0.0
            if self._first is None:
                self._first = moment
            due = (moment - self._first).total_seconds() / self._speed
            return max(0.0, due - elapsed)
        return 0.0


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip()) - (
            1 if path.suffix.lower() == ".csv" else 0
        )


class _Retry(Exception):
    pass


def replay_file(
    path: Path,
    options: ReplayOptions,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    client: httpx.Client | None = None,
) -> Summary:
    summary = Summary()
    pacer = Pacer(options, monotonic)
    own = client is None
    http = client or httpx.Client(base_url=options.url, timeout=60)
    headers = {"Authorization": f"Bearer {options.key}", "Content-Type": "application/x-ndjson"}

    @retry(
        retry=retry_if_exception_type((_Retry, httpx.TransportError)),
        wait=wait_exponential(multiplier=0.5, max=30),
        stop=stop_after_attempt(8),
        reraise=True,
    )
    def post(body: bytes) -> httpx.Response:
        answer = http.post("/v1/events/batch", content=body, headers=headers)
        if answer.status_code in (429, 502, 503, 504):
            raise _Retry(f"server answered {answer.status_code}")
        return answer

    def flush(batch: list[Line]) -> None:
        if not batch:
            return
        answer = post(
            b"\n".join(json.dumps(line.event, ensure_ascii=False).encode() for line in batch)
        )
        if answer.status_code in (401, 403, 413, 415):
            raise InvalidInput(
                f"the server refused the replay: {answer.status_code} {answer.text[:300]}"
            )
        data = answer.json()
        result: dict[str, Any] = (
            data if answer.status_code == 200 else {"errors": data["error"]["details"] or []}
        )
        summary.sent += len(batch)
        summary.accepted += int(result.get("accepted", 0))
        summary.duplicates += int(result.get("duplicates", 0))
        for error in result["errors"]:
            where = batch[int(error["line"]) - 1].number
            field_name = f" {error['field']}:" if error.get("field") else ""
            summary.rejected.append(f"{path}:{where}:{field_name} {error['reason']}")

    try:
        with tqdm(total=_count_lines(path), unit="ev", desc=path.name, disable=None) as bar:
            batch: list[Line] = []
            for line in read_events(path, options):
                wait = pacer.wait_for(line.event)
                if wait > 0:
                    flush(batch)
                    bar.update(len(batch))
                    batch = []
                    sleep(wait)
                batch.append(line)
                if len(batch) >= options.batch_size:
                    flush(batch)
                    bar.update(len(batch))
                    batch = []
            flush(batch)
            bar.update(len(batch))
    finally:
        if own:
            http.close()
    return summary
