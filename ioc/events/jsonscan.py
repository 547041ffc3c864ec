"""The shape of a JSON array's bytes without decoding it: its top-level elements and its depth.

A batch's event cap must be checked before its events are decoded (decoding a million tiny
elements costs far more memory and time than the cap allows). The scan walks the bytes in
fixed-size chunks with numpy, so its memory is bounded whatever the body's size, and numpy
releases the GIL while it works, so a scan in a worker thread leaves the event loop free.
Malformed JSON gives meaningless figures; the decoder reports it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

CHUNK = 1 << 18

_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
# +1 for what opens a level, -1 for what closes one.
_STEP = np.zeros(256, dtype=np.int32)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


@dataclass(frozen=True, slots=True)
class Shape:
    elements: int  # top-level elements (an upper bound: ``[]`` counts one)
    depth: int  # deepest nesting of arrays and objects


def scan_array(body: bytes | bytearray, chunk: int = CHUNK, stop_after: int | None = None) -> Shape:
    """Count the top-level elements and the nesting depth of a JSON array.

    With ``stop_after``, the scan ends as soon as more elements than that are seen.
    """
    deepest = 0
    commas = 0
    for _, separators, deepest_here in _walk(body, chunk):
        deepest = max(deepest, deepest_here)
        commas += int(np.count_nonzero(separators))
        if stop_after is not None and commas + 1 > stop_after:
            break
    return Shape(commas + 1, deepest)


def separators(
    body: bytes | bytearray, chunk: int = CHUNK, deepest: int | None = None
) -> list[int] | None:
    """Offsets of the commas between a JSON array's top-level elements, in order; None as soon
    as the nesting goes deeper than ``deepest``."""
    found: list[int] = []
    for start, commas, depth in _walk(body, chunk):
        if deepest is not None and depth > deepest:
            return None
        found.extend((np.flatnonzero(commas) + start).tolist())
    return found


def _walk(body: bytes | bytearray, chunk: int) -> Iterator[tuple[int, npt.NDArray[np.bool_], int]]:
    """Per chunk: its offset, where its top-level commas are, and its deepest nesting."""
    depth = 0  # nesting depth at the end of the previous chunk
    in_string = 0  # 1 when the previous chunk ended inside a string
    run = 0  # backslashes that ended the previous chunk
    view = memoryview(body)
    for start in range(0, len(body), chunk):
        piece = view[start : start + chunk]
        a = np.frombuffer(piece, dtype=np.uint8)
        quote = a == _QUOTE
        if run or body.find(b"\\", start, start + chunk) >= 0:
            quote &= _escaped_before(a, run) % 2 == 0
            run = _trailing(a, run)
        quotes = np.cumsum(quote, dtype=np.int32)
        quotes += in_string
        outside = (quotes & 1) == 0
        outside &= ~quote
        level = np.cumsum(_STEP[a] * outside, dtype=np.int32)
        level += depth
        yield start, (a == _COMMA) & outside & (level == 1), int(level.max())
        depth = int(level[-1])
        in_string = int(quotes[-1] & 1)


def _escaped_before(a: npt.NDArray[np.uint8], run: int) -> npt.NDArray[np.int64]:
    """How many backslashes come right before each byte (``run`` of them end the last chunk)."""
    index = np.arange(len(a), dtype=np.int64)
    last_plain = np.maximum.accumulate(np.where(a == _BACKSLASH, -1, index))
    before = np.empty(len(a), dtype=np.int64)
    before[0] = run
    before[1:] = index[:-1] - last_plain[:-1]
    before[1:] += np.where(last_plain[:-1] < 0, run, 0)
    return before


def _trailing(a: npt.NDArray[np.uint8], run: int) -> int:
    """Backslashes at the end of this chunk (with the ``run`` before it, if it is all of them)."""
    plain = np.flatnonzero(a != _BACKSLASH)
    return run + len(a) if len(plain) == 0 else len(a) - 1 - int(plain[-1])
