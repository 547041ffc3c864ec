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

import csv
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import msgspec
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential
from tqdm import tqdm

from ioc.errors import InvalidInput
from ioc.events.kinds import KINDS

_TIME_FIELDS: Final = ("observed_at", "occurred_at", "at")
_RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S: Final = 60.0


def _fields(kind: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    return {f.encode_name: f for f in msgspec.structs.fields(kind) if f.encode_name != "kind"}


_FIELDS_OF_KIND: Final = {name: _fields(kind) for name, kind in KINDS.items()}
_ANY_FIELD: Final = frozenset({"kind"}.union(*_FIELDS_OF_KIND.values()))


def _is_datetime(info: msgspec.structs.FieldInfo) -> bool:
    def plain(kind: msgspec.inspect.Type) -> msgspec.inspect.Type:
        # Annotated types (a documented format, a constraint) wrap the type they annotate.
        return kind.type if isinstance(kind, msgspec.inspect.Metadata) else kind

    kind = plain(msgspec.inspect.type_info(info.type))
    if isinstance(kind, msgspec.inspect.UnionType):
        return any(isinstance(plain(t), msgspec.inspect.DateTimeType) for t in kind.types)
    return isinstance(kind, msgspec.inspect.DateTimeType)


_TIMES_OF_KIND: Final = {
    name: tuple(n for n, info in fields.items() if _is_datetime(info))
    for name, fields in _FIELDS_OF_KIND.items()
}


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
    zone: str = "Asia/Ho_Chi_Minh"  # pacing by event time: the zone of naive timestamps
    timezone: str | None = None  # naive timestamps are sent with this zone's offset
    retries: int = 5  # per batch, after the first attempt

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise InvalidInput("retries: must be 0 or more")
        if self.batch_size < 1:
            raise InvalidInput("batch size: must be 1 or more")
        for name in (self.zone, self.timezone):
            if name is not None:
                try:
                    ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError):
                    raise InvalidInput(
                        f"timezone: unknown time zone {name!r} (e.g. 'Europe/Copenhagen')"
                    ) from None
        if self.kind is not None:
            known = _FIELDS_OF_KIND.get(self.kind)
            if known is None:
                raise InvalidInput(f"kind: {self.kind!r} is not one of {', '.join(KINDS)}")
            wrong = sorted((set(self.columns) | set(self.constants)) - set(known))
            if wrong:
                raise InvalidInput(
                    f"{', '.join(wrong)}: not a field of {self.kind}; its fields are: "
                    + ", ".join(known)
                )


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


@dataclass(frozen=True)
class Line:
    number: int
    event: dict[str, Any]


def _zone_of(options: ReplayOptions) -> ZoneInfo | None:
    return ZoneInfo(options.timezone) if options.timezone else None


def read_ndjson(path: Path, options: ReplayOptions) -> Iterator[Line]:
    zone = _zone_of(options)
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                try:
                    event = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"{path}:{number}: malformed JSON: {exc.msg}") from None
                yield Line(number, _localise(event, zone) if isinstance(event, dict) else event)


def read_csv(
    path: Path, options: ReplayOptions, dropped: list[str] | None = None
) -> Iterator[Line]:
    """Rows as events: cells are converted to each field's type; empty cells are left out.

    A column is sent under its new name when ``columns`` renames it, under its own name when
    that is a field of an event; any other column is left out (and listed in ``dropped``).
    """
    zone = _zone_of(options)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        present = list(reader.fieldnames or ())
        wanted = set(options.columns.values()) - set(present)
        if wanted:
            raise InvalidInput(
                f"{path}: no column {', '.join(sorted(wanted))}; columns are: " + ", ".join(present)
            )
        allowed = set(_FIELDS_OF_KIND[options.kind]) | {"kind"} if options.kind else set(_ANY_FIELD)
        renamed = {column: name for name, column in options.columns.items()}
        sent = {
            column: renamed.get(column, column)
            for column in present
            if column in renamed or (column in allowed and column not in options.columns)
        }
        if dropped is not None:
            dropped[:] = [c for c in present if c not in sent]
        for number, row in enumerate(reader, start=2):
            event: dict[str, Any] = {
                name: row[column] for column, name in sent.items() if row[column] not in ("", None)
            }
            event.update(options.constants)
            if options.kind:
                event.setdefault("kind", options.kind)
            yield Line(number, _localise(_coerce(event), zone))


def _coerce(event: dict[str, Any]) -> dict[str, Any]:
    """Cells are text: give each field its type where the text allows it.

    A cell that does not convert is sent as it is, so the server names exactly what is wrong.
    """
    fields = _FIELDS_OF_KIND.get(str(event.get("kind")))
    if fields is None:
        return event
    out = dict(event)
    for name, info in fields.items():
        if name in out:
            try:
                value = msgspec.convert(out[name], info.type, strict=False)
            except msgspec.ValidationError:
                continue
            out[name] = msgspec.to_builtins(value)
    return out


def _localise(event: dict[str, Any], zone: ZoneInfo | None) -> dict[str, Any]:
    """Timestamps without an offset get ``zone``'s offset at that local time."""
    if zone is None:
        return event
    names = _TIMES_OF_KIND.get(str(event.get("kind")), _TIME_FIELDS)
    out = event
    for name in names:
        value = event.get(name)
        if not isinstance(value, str):
            continue
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            continue  # the server names what is wrong with it
        if moment.tzinfo is None:
            if out is event:
                out = dict(event)
            out[name] = moment.replace(tzinfo=zone).isoformat()
    return out


def read_events(
    path: Path, options: ReplayOptions, dropped: list[str] | None = None
) -> Iterator[Line]:
    if path.suffix.lower() == ".csv":
        return read_csv(path, options, dropped)
    return read_ndjson(path, options)


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
