"""The webhook delivery log as people read and work it: each delivery, its tries, a manual retry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec
import psycopg

from ioc.auth import Principal, Role
from ioc.errors import Conflict, Forbidden, NotFound
from ioc.params import bad as _bad
from ioc.params import cursor_error, pack_cursor, page_limit, unpack_cursor
from ioc.params import one as _one

Conn = psycopg.AsyncConnection[Any]

STATES: Final = ("pending", "delivered", "dead")
READERS: Final = frozenset({Role.ADMIN, Role.OPERATOR, Role.LEADER, Role.AGENCY})
RETRIERS: Final = frozenset({Role.ADMIN})
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
QUERY_PARAMETERS: Final = ("agency", "state", "cursor", "limit", "api_key")


class Delivery(msgspec.Struct, kw_only=True):
    """One message owed to an agency's endpoint, as the delivery log shows it."""

    id: int
    agency: str
    kind: str
    idempotency_key: str
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None  # pending only
    delivered_at: datetime | None
    last_error: str | None


class AttemptRecord(msgspec.Struct, kw_only=True):
    id: int
    at: datetime
    url: str
    status: int | None
    error: str | None
    duration_ms: float


class DeliveryDetail(Delivery, kw_only=True):
    payload: dict[str, Any]
    attempt_log: list[AttemptRecord]


class Page(msgspec.Struct):
    deliveries: list[Delivery]
    next: str | None


@dataclass(frozen=True)
class Filters:
    agency: str | None = None
    states: tuple[str, ...] = ()
    before: int | None = None  # the cursor: ids below this one (the log is newest first)
    limit: int = DEFAULT_LIMIT


def encode_cursor(last_id: int) -> str:
    return pack_cursor(["d", last_id])


def decode_cursor(token: str) -> int:
    values = unpack_cursor(token)
    if len(values) != 2 or values[0] != "d" or type(values[1]) is not int:
        raise cursor_error(token)
    if not 0 < values[1] < 2**63:
        raise cursor_error(token)
    return int(values[1])


def parse_filters(query: Mapping[str, Sequence[str]]) -> Filters:
    """Filters from query parameters (name → values); raises InvalidInput naming the bad one."""
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        raise _bad(
            unknown[0],
            "unknown query parameter; accepted: "
            + ", ".join(p for p in QUERY_PARAMETERS if p != "api_key"),
        )
    states = tuple(query.get("state") or ())
    for state in states:
        if state not in STATES:
            raise _bad("state", f"{state!r} is not a delivery state; accepted: {', '.join(STATES)}")
    limit = page_limit(query, DEFAULT_LIMIT, MAX_LIMIT)
    cursor = _one(query, "cursor")
    return Filters(
        agency=_one(query, "agency") or None,
        states=states,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )


def _scope(who: Principal) -> str | None:
    """The one agency this caller may see, or None for all."""
    if who.role is Role.AGENCY:
        return who.agency or ""  # an agency key without an agency sees nothing
    return None


_COLUMNS = """id, agency, kind, idempotency_key, state, attempts, created_at,
              CASE WHEN state = 'pending' THEN next_attempt_at END, delivered_at, last_error"""


def _delivery(row: Sequence[Any], make: Callable[..., Delivery] = Delivery, **more: Any) -> Any:
    return make(
        id=row[0],
        agency=row[1],
        kind=row[2],
        idempotency_key=row[3],
        state=row[4],
        attempts=row[5],
        created_at=row[6],
        next_attempt_at=row[7],
        delivered_at=row[8],
        last_error=row[9],
        **more,
    )


async def list_deliveries(conn: Conn, who: Principal, filters: Filters) -> Page:
    """One page of the delivery log, newest first (keyset pagination on the id)."""
    who.require(READERS)
    scope = _scope(who)
    if scope is not None and filters.agency not in (None, scope):
        raise Forbidden(
            f"an agency key sees only its own agency's deliveries ({scope!r}), "
            f"not {filters.agency!r}"
        )
    agency = scope if scope is not None else filters.agency
    cur = await conn.execute(
        f"""SELECT {_COLUMNS} FROM outbox
            WHERE (%(agency)s::text IS NULL OR agency = %(agency)s)
              AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s))
              AND (%(before)s::bigint IS NULL OR id < %(before)s)
            ORDER BY id DESC LIMIT %(take)s""",
        {
            "agency": agency,
            "states": list(filters.states) or None,
            "before": filters.before,
            "take": filters.limit + 1,
        },
    )
    rows = await cur.fetchall()
    deliveries = [_delivery(r) for r in rows[: filters.limit]]
    more = len(rows) > filters.limit
    return Page(deliveries, encode_cursor(deliveries[-1].id) if more and deliveries else None)


def _not_found(delivery_id: int) -> NotFound:
    return NotFound(f"no delivery {delivery_id} in your log")


async def get_delivery(conn: Conn, who: Principal, delivery_id: int) -> DeliveryDetail:
    """One delivery with its payload and every attempt, oldest first."""
    who.require(READERS)
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, payload FROM outbox WHERE id = %s", (delivery_id,)
    )
    row = await cur.fetchone()
    scope = _scope(who)
    if row is None or (scope is not None and row[1] != scope):
        raise _not_found(delivery_id)
    cur = await conn.execute(
        """SELECT id, at, url, status, error, duration_ms FROM outbox_attempts
           WHERE outbox_id = %s ORDER BY id""",
        (delivery_id,),
    )
    log = [
        AttemptRecord(id=r[0], at=r[1], url=r[2], status=r[3], error=r[4], duration_ms=r[5])
        for r in await cur.fetchall()
    ]
    detail: DeliveryDetail = _delivery(row, DeliveryDetail, payload=row[10], attempt_log=log)
    return detail


async def retry(conn: Conn, who: Principal, delivery_id: int, now: datetime) -> DeliveryDetail:
    """Make a dead or pending delivery due now. A dead one starts a fresh series of attempts;
    a pending one keeps its count and any lease (an attempt in flight is not doubled)."""
    who.require(RETRIERS)
    # One transaction: the answer shows the delivery as retried, before a dispatcher takes it.
    async with conn.transaction():
        cur = await conn.execute(
            """UPDATE outbox SET
                 next_attempt_at = %(now)s,
                 attempts = CASE WHEN state = 'dead' THEN 0 ELSE attempts END,
                 state = 'pending'
               WHERE id = %(id)s AND state IN ('pending', 'dead')""",
            {"now": now, "id": delivery_id},
        )
        if cur.rowcount != 1:
            found = await conn.execute(
                "SELECT delivered_at FROM outbox WHERE id = %s", (delivery_id,)
            )
            row = await found.fetchone()
            if row is None:
                raise _not_found(delivery_id)
            raise Conflict(
                f"delivery {delivery_id} was already delivered at {row[0].isoformat()}; "
                "nothing to retry"
            )
        return await get_delivery(conn, who, delivery_id)
