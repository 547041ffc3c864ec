"""Turn request bodies into checked events, with a precise reason for each rejected line.

A batch keeps every valid line: decoding and checking never stop at the first bad line.
What each event must satisfy beyond its schema is in ``ioc.events.rules``. The cap on events per request is checked on the raw body, before the
events are decoded (``count_events``).
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import msgspec

from ioc.errors import InvalidInput, MalformedBody, PayloadTooLarge, UnsupportedMediaType
from ioc.events.jsonscan import scan_array, separators
from ioc.events.kinds import ACCEPTED_VALUES, Event
from ioc.events.rules import NUL_REASON, EventRules, Problem, nul_field

NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
JSON_TYPES = frozenset({"application/json"})
BATCH_TYPES = tuple(sorted(NDJSON_TYPES | JSON_TYPES))

_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
# NDJSON read whole: an array of one-event arrays, one per line (``_decode_lines_at_once``).
_lines_decoder = msgspec.json.Decoder(list[tuple[Event]])
_raw_value = msgspec.json.Decoder(msgspec.Raw)
_PATH = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_FIELD_IN_REASON = re.compile(r"field `([^`]+)`")
# A NUL can only reach a decoded string through this escape (a raw NUL byte is malformed JSON).
_NUL_ESCAPE = b"\\u0000"
# A line that holds an event: something other than blanks before the next newline. Anchored
# at line starts, so a long blank line costs one pass, not one per position.
_EVENT_LINE = re.compile(rb"^[ \t\r\x0b\x0c]*([^ \t\r\n\x0b\x0c][^\n]*)", re.M)
NESTED_TOO_DEEPLY = "the JSON is nested too deeply"

# Checks one decoded event: the event to keep, or raises Problem.
Check = Callable[[Event], Event]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one line was refused. ``line`` is the NDJSON line, or the 1-based array position."""

    line: int
    field: str | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass(slots=True)
class Decoded:
    events: list[Event] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    # Each distinct reason once: a batch of refused events often repeats one reason, and
    # thousands of equal strings would hold memory until the answer is sent.
    _reasons: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def keep(self, line: int, event: Event) -> None:
        self.events.append(event)
        self.lines.append(line)

    def refuse(self, line: int, name: str | None, reason: str) -> None:
        self.rejected.append(Rejection(line, name, self._reasons.setdefault(reason, reason)))


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def explain(exc: msgspec.MsgspecError) -> tuple[str | None, str]:
    """(field, reason) from a decoder error, quoting the accepted values of closed fields."""
    text = str(exc)
    # ValidationError subclasses DecodeError, so it must be told apart first.
    if not isinstance(exc, msgspec.ValidationError):
        detail = text.removeprefix("JSON is malformed: ")
        return None, f"malformed JSON: {detail[:1].lower()}{detail[1:]}"
    match = _PATH.match(text)
    reason = match.group("reason") if match else text
    path = (match.group("path") or "") if match else ""
    name = path.lstrip(".") or None
    if name is None:
        quoted = _FIELD_IN_REASON.search(reason)
        name = quoted.group(1) if quoted else None
    leaf = name.rsplit(".", 1)[-1] if name else None
    if leaf in ACCEPTED_VALUES and ("Invalid" in reason or "missing" in reason):
        if leaf == "kind" and "Invalid value" in reason:
            reason = reason.replace("Invalid value", "unknown kind")
        reason += "; accepted: " + ", ".join(ACCEPTED_VALUES[leaf])
    return name, reason


def decode_one(body: bytes | bytearray) -> Event:
    """One event from a JSON object; raises MalformedBody or InvalidInput."""
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        name, reason = explain(exc)
        raise InvalidInput(
            f"{name}: {reason}" if name else reason, [{"field": name, "reason": reason}]
        ) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(explain(exc)[1]) from None
    except RecursionError:
        raise MalformedBody(NESTED_TOO_DEEPLY) from None


def count_events(body: bytes | bytearray, content_type: str | None, most: int) -> None:
    """Refuse (413) a batch of more than ``most`` events, before decoding any of them.

    NDJSON counts its non-blank lines; a JSON array its top-level elements (``ioc.events.jsonscan``,
    which walks the bytes in bounded chunks). Both only look further when a cheap upper bound
    (newlines, commas) is already over the cap.
    """
    kind = media_type(content_type)
    if kind in NDJSON_TYPES:
        if _count(body, b"\n") < most:
            return
        total = 0
        for total, _ in enumerate(_EVENT_LINE.finditer(body), start=1):
            if total > most:
                break
    elif kind in JSON_TYPES:
        if _count(body, b",") < most:
            return
        total = scan_array(body, stop_after=most).elements
    else:
        return
    if total > most:
        raise PayloadTooLarge(
            f"the batch has more than {most} events; at most {most} are accepted per request"
        )


# Scans of a whole body go by slices this large: the GIL changes hands between them, so a scan
# in a worker thread never holds the event loop up for long.
_SLICE = 1 << 20


def _count(body: bytes | bytearray, needle: bytes) -> int:
    return sum(body.count(needle, at, at + _SLICE) for at in range(0, len(body), _SLICE))


def _holds(body: bytes | bytearray, needle: bytes) -> bool:
    overlap = len(needle) - 1
    return any(
        body.find(needle, at, at + _SLICE + overlap) >= 0 for at in range(0, len(body), _SLICE)
    )


def check_batch(
    body: bytes | bytearray,
    content_type: str | None,
    rules: EventRules,
    source: str | None,
    most: int,
) -> Decoded:
    """A batch body's checked events and refused lines; raises if the body as a whole is bad.

    Pure CPU work with no shared state but the rules: callers may run it in a worker thread.
    """
    count_events(body, content_type, most)
    return _decode(body, content_type, rules.checker(source))


def decode_batch(body: bytes | bytearray, content_type: str | None) -> Decoded:
    """Decode a batch body (NDJSON, or a JSON array) keeping each valid line."""
    return _decode(body, content_type, _as_is)


def _as_is(event: Event) -> Event:
    return event


def _decode(body: bytes | bytearray, content_type: str | None, check: Check) -> Decoded:
    """Each event is checked as soon as it is decoded: a refused one is not kept in memory."""
    kind = media_type(content_type)
    if _holds(body, _NUL_ESCAPE):
        check = _nul_first(check)
    if kind in NDJSON_TYPES:
        return _decode_lines(body, check)
    if kind in JSON_TYPES:
        return _decode_array(body, check)
    raise UnsupportedMediaType(
        f"content type {kind or '(none)'!r} is not accepted for a batch; use one of: "
        + ", ".join(BATCH_TYPES)
    )


def _decode_lines(body: bytes | bytearray, check: Check) -> Decoded:
    whole = _decode_lines_at_once(body, check) if len(body) <= _SLICE else None
    return whole if whole is not None else _decode_line_by_line(body, check)


def _decode_lines_at_once(body: bytes | bytearray, check: Check) -> Decoded | None:
    """The lines of a body without blank lines or bad events, in one decoder call; else None.

    Each newline becomes ``],[`` and the body ``[[…]]``: an array of one-event arrays. A
    separator can only close a one-event array there (in an event, a ``]`` closes a list of
    strings, and no key can follow it), so when the decoder finds as many events as there are
    lines, each line held exactly one event, as the line-by-line decoder would have read it.
    Anything else (a blank or malformed line, an event the schema refuses) gives None, and the
    body is decoded line by line, which says what is wrong with each line.
    """
    text = bytes(body).rstrip(b" \t\r\n")
    if not text:
        return None
    try:
        events = _lines_decoder.decode(b"[[" + text.replace(b"\n", b"],[") + b"]]")
    except (msgspec.MsgspecError, RecursionError):
        return None
    if len(events) != text.count(b"\n") + 1:
        return None
    out = Decoded()
    keep_event, keep_line = out.events.append, out.lines.append
    for number, (event,) in enumerate(events, start=1):
        try:
            kept = check(event)
        except Problem as problem:
            out.refuse(number, problem.field, problem.reason)
            continue
        keep_event(kept)
        keep_line(number)
    return out


def _decode_line_by_line(body: bytes | bytearray, check: Check) -> Decoded:
    out = Decoded()
    view = memoryview(body)  # lines are decoded in place, not copied out of the body
    number, at = 1, 0
    for match in _EVENT_LINE.finditer(body):
        number += body.count(b"\n", at, match.start())
        at = match.start()
        try:
            event = _decoder.decode(view[match.start(1) : match.end()])
        except msgspec.MsgspecError as exc:
            out.refuse(number, *explain(exc))
            continue
        except RecursionError:
            out.refuse(number, None, NESTED_TOO_DEEPLY)
            continue
        _keep_checked(out, number, event, check)
    return out


def _keep_checked(out: Decoded, number: int, event: Event, check: Check) -> None:
    try:
        out.keep(number, check(event))
    except Problem as problem:
        out.refuse(number, problem.field, problem.reason)


def _decode_array(body: bytes | bytearray, check: Check) -> Decoded:
    out = Decoded()
    for number, (raw, at) in enumerate(_array_items(body), start=1):
        try:
            event = _decoder.decode(raw)
        except msgspec.ValidationError as exc:
            if at:  # a slice of the body: the decoder may have stopped before its end
                _well_formed(raw, at)
            out.refuse(number, *explain(exc))
            continue
        except msgspec.DecodeError as exc:
            # Only a slice of the body (below) can be malformed here: the body as a whole is.
            raise MalformedBody(_shifted(explain(exc)[1], at)) from None
        except RecursionError:
            raise MalformedBody(NESTED_TOO_DEEPLY) from None
        _keep_checked(out, number, event, check)
    return out


_BLANKS = b" \t\r\n"
_BYTE_AT = re.compile(r"\(byte (\d+)\)")
_LEADING_BLANKS = re.compile(rb"[ \t\r\n]*")


def _array_items(body: bytes | bytearray) -> Iterator[tuple[msgspec.Raw | memoryview, int]]:
    """A JSON array's elements, undecoded, each with its offset in the body.

    A body over ``_SLICE`` bytes is cut at its top-level commas (``ioc.events.jsonscan``) and each
    element is decoded on its own, in place: one decoder call over a whole body would hold the
    GIL (and the event loop) for that long. An element that is not well-formed JSON makes the
    body malformed as a whole, as a whole-body decode would.
    """
    cuts = _cuts(body) if len(body) > _SLICE else None
    if cuts is None:
        try:
            items = _raw_list.decode(body)
        except msgspec.ValidationError:
            raise InvalidInput("a JSON batch must be an array of event objects") from None
        except msgspec.DecodeError as exc:
            raise MalformedBody(explain(exc)[1]) from None
        except RecursionError:
            raise MalformedBody(NESTED_TOO_DEEPLY) from None
        for raw in items:
            yield raw, 0
        return
    view = memoryview(body)
    if len(cuts) == 2 and _LEADING_BLANKS.fullmatch(body, cuts[0] + 1, cuts[1]) is not None:
        return  # an empty array
    for left, right in itertools.pairwise(cuts):
        yield view[left + 1 : right], left + 1


def _cuts(body: bytes | bytearray) -> list[int] | None:
    """The offsets of the opening bracket, the top-level commas and the closing bracket of a
    JSON array, or None when the body does not look like one (it is then decoded whole, which
    names what is wrong)."""
    found = _LEADING_BLANKS.match(body, 0, 1 << 10)
    opening = found.end() if found else 0
    kept = min(64, len(body))
    tail = bytes(body[len(body) - kept :]).rstrip(_BLANKS)
    closing = len(body) - kept + len(tail) - 1
    if body[opening : opening + 1] != b"[" or tail[-1:] != b"]" or closing <= opening:
        return None
    # Nesting the decoder refuses anyway ends the scan early: the body is then decoded whole.
    commas = separators(body, deepest=sys.getrecursionlimit())
    if commas is None or (commas and not opening < commas[0] <= commas[-1] < closing):
        return None
    return [opening, *commas, closing]


def _well_formed(raw: msgspec.Raw | memoryview, at: int) -> None:
    """Raise MalformedBody unless the slice at ``at`` is one well-formed JSON value."""
    try:
        _raw_value.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedBody(_shifted(explain(exc)[1], at)) from None
    except RecursionError:
        raise MalformedBody(NESTED_TOO_DEEPLY) from None


def _shifted(reason: str, offset: int) -> str:
    """A decoder's reason with its byte position counted from the start of the body."""
    return _BYTE_AT.sub(lambda m: f"(byte {int(m.group(1)) + offset})", reason)


def _nul_first(check: Check) -> Check:
    """``check``, after refusing an event with a NUL in its text (only looked for when the
    body holds the escape, the one way a NUL can reach a decoded string)."""

    def checked(event: Event) -> Event:
        name = nul_field(event)
        if name is not None:
            raise Problem(name, NUL_REASON)
        return check(event)

    return checked


def apply_rules(decoded: Decoded, rules: EventRules, source: str | None) -> Decoded:
    """Run the rules over decoded events; refused ones move to the rejections."""
    out = Decoded(rejected=list(decoded.rejected))
    check = rules.checker(source)
    for line, event in zip(decoded.lines, decoded.events, strict=True):
        try:
            out.keep(line, check(event))
        except Problem as problem:
            out.rejected.append(Rejection(line, problem.field, problem.reason))
    return out


def reject_lines(decoded: Decoded, bad: Iterable[tuple[int, str | None, str]]) -> Decoded:
    """Move the given (line, field, reason) out of the kept events."""
    refused = {line: (name, reason) for line, name, reason in bad}
    if not refused:
        return decoded
    out = Decoded(rejected=list(decoded.rejected))
    for line, event in zip(decoded.lines, decoded.events, strict=True):
        if line in refused:
            out.rejected.append(Rejection(line, *refused[line]))
        else:
            out.keep(line, event)
    out.rejected.sort(key=lambda r: r.line)
    return out
