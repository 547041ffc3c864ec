"""Array frames: a live feed's messages (JSON texts) joined into frames that are each a JSON
array of one or more messages, in order, for the clients that ask for them (``?batch=1``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

# An array frame holds messages up to about this many characters (then another frame follows).
FRAME_CHARS: Final = 200_000


def array_frames(texts: Sequence[str]) -> list[str]:
    """The messages as array frames of up to about ``FRAME_CHARS`` characters (a single longer
    message is a frame of its own)."""
    frames: list[str] = []
    start, size = 0, 0
    for end, text in enumerate(texts):
        if size and size + len(text) > FRAME_CHARS:
            frames.append("[" + ",".join(texts[start:end]) + "]")
            start, size = end, 0
        size += len(text) + 1
    if start < len(texts):
        frames.append("[" + ",".join(texts[start:]) + "]")
    return frames
