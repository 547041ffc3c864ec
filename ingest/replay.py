"""``ioc replay``: stream an NDJSON or CSV file of events to a running server.

Batches go to ``POST /v1/events/batch``. The pace is either a rate (events per second) or the
events' own timestamps sped up by a factor. Refused lines are reported with their line number
in the file.

CSV files rarely use the platform's field names: columns are renamed (``columns``), fixed
fields are added to every row (``constants``), and a column that is neither renamed nor named
after a field of the event is left out (and named once in the summary). Timestamps without an
offset, in CSV or NDJSON, are read in ``timezone`` when one is given, else the server reads
them in its own zone.

A busy server (429, 503), a server error (5xx) or an unreachable server is retried with
exponential backoff (and at least the server's Retry-After); because ingest is idempotent, a
retried batch is never stored twice. Every server error is counted. When a batch still fails
after the last retry, the replay stops there: the summary names the lines not stored, and
``Summary.complete`` is false (the command exits non-zero). Replaying the file again is safe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential
from tqdm import tqdm

from ingest.replay_files import TIME_FIELDS, Line, ReplayOptions, read_events
from ioc.errors import InvalidInput

_RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S: Final = 60.0


@dataclass
class Summary:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)
    server_errors: int = 0  # 5xx answers and failed connections, retried ones included
    retried: int = 0
    not_stored: list[str] = field(default_factory=list)  # batches given up on
    stopped_at: str | None = None  # where the replay stopped, when it did not finish
    dropped_columns: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every line was answered by the server (stored, duplicate or rejected)."""
        return not self.not_stored and self.stopped_at is None

    def __str__(self) -> str:
        head = (
            f"sent {self.sent}, accepted {self.accepted}, duplicates {self.duplicates}, "
            f"rejected {len(self.rejected)}, server errors {self.server_errors} "
            f"(retried {self.retried})"
        )
        lines = [head]
        if self.dropped_columns:
            lines.append("columns not sent: " + ", ".join(self.dropped_columns))
        shown = self.rejected[:20]
        more = len(self.rejected) - len(shown)
        lines += [*shown, *([f"… and {more} more"] if more > 0 else [])]
        lines += self.not_stored
        if self.stopped_at is not None:
            lines.append(
                f"stopped {self.stopped_at}; replaying the file again is safe "
                "(what was stored counts as duplicates)"
            )
        return "\n".join(lines)


def _moment(event: dict[str, Any], zone: ZoneInfo) -> datetime | None:
    for name in TIME_FIELDS:
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
        self._zone = ZoneInfo(options.timezone or options.zone)
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


class _Trouble(Exception):
    """The server could not take the batch now (busy, failing or out of reach)."""

    def __init__(self, reason: str, retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


def _retry_after(answer: httpx.Response) -> float:
    try:
        return min(_MAX_RETRY_AFTER_S, max(0.0, float(answer.headers.get("Retry-After", 0))))
    except ValueError:
        return 0.0


def _described(answer: httpx.Response) -> str:
    try:
        error = answer.json()["error"]
        return f"server answered {answer.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"server answered {answer.status_code}: {answer.text[:200]}"


_backoff = wait_exponential(multiplier=0.5, max=30)


def _wait(state: RetryCallState) -> float:
    """Exponential backoff, but never sooner than the server asked (Retry-After)."""
    failure = state.outcome.exception() if state.outcome else None
    asked = failure.retry_after_s if isinstance(failure, _Trouble) else 0.0
    return max(float(_backoff(state)), asked)


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

    def attempt(body: bytes) -> httpx.Response:
        try:
            answer = http.post("/v1/events/batch", content=body, headers=headers)
        except httpx.TransportError as exc:
            summary.server_errors += 1
            raise _Trouble(f"server unreachable at {options.url}: {exc!r}") from exc
        if answer.status_code in _RETRY_STATUS:
            if answer.status_code >= 500:
                summary.server_errors += 1
            raise _Trouble(_described(answer), _retry_after(answer))
        return answer

    def note_retry(_: RetryCallState) -> None:
        summary.retried += 1

    def post(body: bytes) -> httpx.Response:
        retrying = Retrying(
            retry=retry_if_exception_type(_Trouble),
            wait=_wait,
            stop=stop_after_attempt(options.retries + 1),
            sleep=sleep,
            before_sleep=note_retry,
            reraise=True,
        )
        return retrying(attempt, body)

    def flush(batch: list[Line]) -> None:
        if not batch:
            return
        summary.sent += len(batch)
        try:
            answer = post(
                b"\n".join(json.dumps(line.event, ensure_ascii=False).encode() for line in batch)
            )
        except _Trouble as exc:
            first, last = batch[0].number, batch[-1].number
            summary.not_stored.append(
                f"{path}:{first}–{last}: {len(batch)} lines not stored (gave up after "
                f"{options.retries + 1} attempts): {exc.reason}"
            )
            summary.stopped_at = f"after line {last}: the rest of the file was not sent"
            raise
        if answer.status_code not in (200, 422):
            raise InvalidInput(f"the server refused the replay: {_described(answer)}")
        data = answer.json()
        result: dict[str, Any] = (
            data if answer.status_code == 200 else {"errors": data["error"]["details"] or []}
        )
        summary.accepted += int(result.get("accepted", 0))
        summary.duplicates += int(result.get("duplicates", 0))
        for error in result["errors"]:
            where = batch[int(error["line"]) - 1].number
            field_name = f" {error['field']}:" if error.get("field") else ""
            summary.rejected.append(f"{path}:{where}:{field_name} {error['reason']}")

    try:
        with tqdm(total=_count_lines(path), unit="ev", desc=path.name, disable=None) as bar:
            batch: list[Line] = []
            for line in read_events(path, options, summary.dropped_columns):
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
    except _Trouble:
        pass  # recorded in the summary by flush
    finally:
        if own:
            http.close()
    return summary
