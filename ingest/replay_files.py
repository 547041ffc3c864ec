"""Reading a replay file: NDJSON or CSV lines turned into events, with renamed columns, fixed fields
and local times read in a zone."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from ioc.errors import InvalidInput
from ioc.events.kinds import KINDS

TIME_FIELDS: Final = ("observed_at", "occurred_at", "at")


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
    names = _TIMES_OF_KIND.get(str(event.get("kind")), TIME_FIELDS)
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
