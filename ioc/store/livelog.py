"""The live log: numbered live notices kept for a while, so a reconnecting client catches up.

Every notice the live hub hears carries ``seq``, a number given at commit in commit order
(migration 0016; since 0021 one range per transaction, kept in ``live_commits``, the rows of
``live_log`` never updated). A client keeps the last number it received and sends it back when it
reconnects, to any server process; the server replays the logged notices after it, then
streams live ones, skipping what the replay already sent. The log is pruned by the upkeep
leader; a cursor older than what is kept gets a resync instead (reload from the API).

A notice may carry several items, each numbered (migration 0028): a batch of tickets
announced with ``ioc_announce_items`` arrives as ``{"seq": S, "items": N, "tickets": [...]}``,
its tickets numbered S, S + 1, …, S + N - 1. Clients never see the batch: it reaches them as
single ticket messages, each with its own number (``expand``), so a client that resumes after
any of them is sent exactly the ones after it.
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


# The newest number and the first number still kept (the ranges of live_commits, migration 0021).
_BOUNDS = """SELECT (SELECT coalesce(max(last_seq), 0) FROM live_commits),
                    (SELECT first_seq FROM live_commits ORDER BY last_seq LIMIT 1)"""
# The notices with an item numbered in (after, upto], in commit order, as they were sent: each
# the number of its first item and its text.
_SINCE = """SELECT c.first_seq + l.ord - 1 AS seq,
                   ioc_live_text(c.first_seq + l.ord - 1, l.payload, l.items)
            FROM live_commits c JOIN live_log l ON l.xact = c.xact
            WHERE c.last_seq > %(after)s AND c.last_seq <= %(upto)s
              AND c.first_seq + l.ord + l.items - 2 > %(after)s
            ORDER BY seq"""


# The text of the notice holding the item numbered %s, as it was sent (no row when it is not
# kept).
_AT = """SELECT ioc_live_text(c.first_seq + l.ord - 1, l.payload, l.items)
         FROM live_commits c JOIN live_log l ON l.xact = c.xact
         WHERE c.last_seq >= %(seq)s AND c.first_seq <= %(seq)s
           AND l.ord <= %(seq)s - c.first_seq + 1
           AND l.ord + l.items - 1 >= %(seq)s - c.first_seq + 1
         ORDER BY c.last_seq LIMIT 1"""


async def text_at(conn: Any, seq: int) -> str | None:
    """The notice holding the item numbered ``seq`` (a notice of one item: the notice numbered
    ``seq``) as it was sent, or None when the log does not hold it."""
    cur = await conn.execute(_AT, {"seq": seq})
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def newest(conn: Any) -> int:
    """The newest number committed (0 when none is kept)."""
    cur = await conn.execute(_BOUNDS)
    row = await cur.fetchone()
    return int(row[0])


async def replay(
    conn: Any, after: int, accept: Callable[[Mapping[str, Any]], bool], limit: int = MAX_REPLAY
) -> Replay:
    """The notices after ``after`` that ``accept`` takes, or a resync if some are gone.

    A notice that carries a batch (``alerts``: a list of single-alert notices) is taken when
    ``accept`` takes one of its items, and is replayed with only the items taken; a batch of
    tickets is replayed as the ticket messages taken (``expand``), each under its own number,
    those numbered up to ``after`` left out (a cursor may fall inside a batch).
    """
    cur = await conn.execute(_BOUNDS)
    row = await cur.fetchone()
    upto, oldest = int(row[0]), row[1]
    if oldest is None:
        # Nothing kept: a client behind the last number handed out missed notices that were
        # pruned since (the number is only used to decide that, never as a floor: a notice
        # numbered but not yet committed must still reach the client live).
        cur = await conn.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM live_seq"
        )
        handed = await cur.fetchone()
        return Replay([], upto, resync=bool(handed and after < int(handed[0])))
    if after >= upto:
        return Replay([], upto, resync=False)
    # Pruned notices after the cursor: what they said is gone (a gap below the oldest kept
    # notice may also be a rolled-back number; a resync is the safe answer either way).
    if int(oldest) > after + 1:
        return Replay([], upto, resync=True)
    cur = await conn.execute(_SINCE, {"after": after, "upto": upto})
    messages: list[tuple[int, str, dict[str, Any]]] = []
    async for _, text in cur:
        message = json.loads(text)
        if not isinstance(message, dict):
            continue
        for seq, one, one_text in expand(message, text, after):
            taken = filtered(one, one_text, accept)
            if taken is not None:
                messages.append((seq, taken[0], taken[1]))
        if len(messages) > limit:
            return Replay([], upto, resync=True)
    return Replay(messages, upto, resync=False)


def items(message: Mapping[str, Any]) -> int:
    """How many numbers a notice takes: its ``items`` (a batch numbered item by item), else 1."""
    count = message.get("items")
    return count if isinstance(count, int) and count > 1 else 1


def expand(
    message: dict[str, Any], text: str, after: int = 0
) -> list[tuple[int, dict[str, Any], str]]:
    """The messages of one notice after number ``after``, each (seq, message, text); seq is 0
    for a notice without a number.

    A batch of tickets (``tickets``: a list of ticket messages) is its tickets, numbered from
    the notice's ``seq`` one by one when the notice says it has that many ``items``, else (as
    logged before migration 0028) each under the notice's ``seq``. Any other notice is itself.
    """
    seq = message.get("seq")
    seq = seq if isinstance(seq, int) else 0
    batch = message.get("tickets")
    if not isinstance(batch, list):
        return [(seq, message, text)] if not seq or seq > after else []
    step = 1 if items(message) == len(batch) else 0
    out: list[tuple[int, dict[str, Any], str]] = []
    for index, item in enumerate(batch):
        number = seq + step * index if seq else 0
        if not isinstance(item, dict) or (number and number <= after):
            continue
        one = {"seq": number, **{k: v for k, v in item.items() if k != "seq"}}
        if not number:
            del one["seq"]
        out.append((number, one, _dumps(one)))
    return out


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def filtered(
    message: dict[str, Any], text: str, accept: Callable[[Mapping[str, Any]], bool]
) -> tuple[str, dict[str, Any]] | None:
    """What of one notice a subscriber takes: (text, message), or None for nothing.

    A batch notice (``alerts``) is filtered item by item: all taken, the notice as it came;
    some, a notice of those items with the same ``seq``; none, nothing.
    """
    items = message.get("alerts")
    if not isinstance(items, list):
        return (text, message) if accept(message) else None
    kept = [item for item in items if isinstance(item, dict) and accept(item)]
    if not kept:
        return None
    if len(kept) == len(items):
        return text, message
    part = {**message, "alerts": kept}
    return _dumps(part), part


async def prune(conn: Any, keep: timedelta = KEEP) -> int:
    """Drop notices older than ``keep`` (by the database's clock, which stamped them)."""
    cur = await conn.execute(
        """WITH gone AS (DELETE FROM live_commits WHERE at < now() - %s RETURNING xact)
           DELETE FROM live_log l USING gone WHERE l.xact = gone.xact""",
        (keep,),
    )
    return int(cur.rowcount or 0)
