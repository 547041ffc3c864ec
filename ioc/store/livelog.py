"""The live log: numbered live notices kept for a while, so a reconnecting client catches up.

Every notice the live hub hears carries ``seq``, a number given at commit in commit order
(migration 0016). A client keeps the last number it received and sends it back when it
reconnects, to any server process; the server replays the logged notices after it, then
streams live ones, skipping what the replay already sent. The log is pruned by the upkeep
leader; a cursor older than what is kept gets a resync instead (reload from the API).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from ioc.errors import InvalidInput

# Notices are kept this long (the wall's own catch-up window is the same hour).
KEEP: Final = timedelta(hours=1)
# A replay sends at most this many notices; a client further behind reloads instead.
MAX_REPLAY: Final = 20_000


@dataclass(frozen=True)
class Replay:
    """What a client missed after its cursor: the notices, or ``resync`` when they are gone."""

    messages: list[tuple[int, str, dict[str, Any]]]  # (seq, text, parsed), in commit order
    upto: int  # every notice numbered up to this has been considered
    resync: bool


def parse_after(text: str | None) -> int | None:
    """The ``after`` parameter of a live feed: the last ``seq`` the client received."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or value >= 2**63:
        reason = "must be the last 'seq' received (a whole number, 0 or more)"
        raise InvalidInput(f"after: {reason}", [{"field": "after", "reason": reason}])
    return value


async def replay(
    conn: Any, after: int, accept: Callable[[Mapping[str, Any]], bool], limit: int = MAX_REPLAY
) -> Replay:
    """The notices after ``after`` that ``accept`` takes, or a resync if some are gone."""
    cur = await conn.execute(
        "SELECT coalesce(max(seq), 0), min(seq) FROM live_log WHERE seq IS NOT NULL"
    )
    row = await cur.fetchone()
    newest, oldest = int(row[0]), row[1]
    if oldest is None:
        # Nothing kept: a client behind the last number handed out missed notices that were
        # pruned since (the number is only used to decide that, never as a floor: a notice
        # numbered but not yet committed must still reach the client live).
        cur = await conn.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM live_seq"
        )
        handed = await cur.fetchone()
        return Replay([], newest, resync=bool(handed and after < int(handed[0])))
    if after >= newest:
        return Replay([], newest, resync=False)
    # Pruned notices after the cursor: what they said is gone (a gap below the oldest kept
    # notice may also be a rolled-back number; a resync is the safe answer either way).
    if int(oldest) > after + 1:
        return Replay([], newest, resync=True)
    cur = await conn.execute(
        "SELECT seq, payload FROM live_log WHERE seq > %s AND seq <= %s ORDER BY seq",
        (after, newest),
    )
    messages: list[tuple[int, str, dict[str, Any]]] = []
    async for seq, text in cur:
        message = json.loads(text)
        if isinstance(message, dict) and accept(message):
            messages.append((int(seq), text, message))
            if len(messages) > limit:
                return Replay([], newest, resync=True)
    return Replay(messages, newest, resync=False)


async def prune(conn: Any, keep: timedelta = KEEP) -> int:
    """Drop notices older than ``keep`` (by the database's clock, which stamped them)."""
    cur = await conn.execute("DELETE FROM live_log WHERE at < now() - %s", (keep,))
    return int(cur.rowcount or 0)
