"""API keys at rest, with a short-lived cache so every request does not hit the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ioc.auth import NewKey, Principal, Role, check_new_key, make_key, secret_matches, split_token
from ioc.errors import NotFound, Unauthenticated

Conn = psycopg.AsyncConnection[Any]
_CACHE_LIMIT = 10_000


@dataclass(frozen=True)
class KeyInfo:
    id: int
    prefix: str
    role: str
    source: str | None
    agency: str | None
    label: str
    created_at: datetime
    revoked_at: datetime | None


async def create_key(
    conn: Conn, role: str, source: str | None = None, agency: str | None = None, label: str = ""
) -> tuple[NewKey, int]:
    chosen = check_new_key(role, source, agency)
    key = make_key()
    cur = await conn.execute(
        """INSERT INTO api_keys (prefix, secret_hash, role, source, agency, label)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
        (key.prefix, key.secret_hash, chosen.value, source, agency, label),
    )
    row = await cur.fetchone()
    assert row is not None
    return key, int(row[0])


async def list_keys(conn: Conn, include_revoked: bool = False) -> list[KeyInfo]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT id, prefix, role, source, agency, label, created_at, revoked_at
               FROM api_keys WHERE %s OR revoked_at IS NULL ORDER BY id""",
            (include_revoked,),
        )
        return [KeyInfo(**row) for row in await cur.fetchall()]


async def revoke_key(conn: Conn, prefix: str) -> None:
    """Revoke a key and end every page session logged in with it."""
    cur = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = %s AND revoked_at IS NULL "
        "RETURNING id",
        (prefix,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no active key with prefix {prefix!r} (see `ioc keys list`)")
    await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
        (row[0],),
    )


class TrustCache:
    """Credentials verified recently, trusted for ``cache_s`` seconds (the revocation lag)."""

    def __init__(self, cache_s: float) -> None:
        self.cache_s = cache_s
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, token: str, max_age: float | None = None) -> Principal | None:
        """The principal ``token`` was verified as, if that was under ``max_age`` seconds ago
        (default: the cache lifetime)."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        limit = self.cache_s if max_age is None else min(max_age, self.cache_s)
        if time.monotonic() - entry[1] >= limit:
            return None
        return entry[0]

    def put(self, token: str, principal: Principal) -> None:
        if self.cache_s <= 0:
            return
        if len(self._entries) >= _CACHE_LIMIT:
            now = time.monotonic()
            stale = [t for t, (_, at) in self._entries.items() if now - at >= self.cache_s]
            for old in stale or list(self._entries)[: _CACHE_LIMIT // 2]:
                del self._entries[old]
        self._entries[token] = (principal, time.monotonic())

    def drop(self, token: str) -> None:
        self._entries.pop(token, None)

    def drop_where(self, match: Callable[[Principal], bool]) -> None:
        for token in [t for t, (who, _) in self._entries.items() if match(who)]:
            del self._entries[token]


class KeyVerifier:
    """Checks tokens; a verified key is trusted for ``cache_s`` seconds (revocation lag).

    Checks of one token that overlap share one lookup: the open sockets of a key re-check it
    on the same beat, and a few hundred of them must not take a connection each."""

    def __init__(self, cache_s: float) -> None:
        self.cache = TrustCache(cache_s)
        self._looking: dict[str, asyncio.Task[Principal]] = {}

    async def verify(self, pool_conn: Any, token: str, max_age: float | None = None) -> Principal:
        prefix, secret = split_token(token)
        cached = self.cache.get(token, max_age)
        if cached is not None:
            return cached
        lookup = self._looking.get(token)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(pool_conn, token, prefix, secret))
            self._looking[token] = lookup
            lookup.add_done_callback(lambda done: self._done(token, done))
        # One caller cancelled (its socket closed) does not cancel the others' lookup.
        return await asyncio.shield(lookup)

    def _done(self, token: str, lookup: asyncio.Task[Principal]) -> None:
        if self._looking.get(token) is lookup:
            del self._looking[token]
        if not lookup.cancelled():
            lookup.exception()  # retrieved even when every caller left

    async def _look_up(self, pool_conn: Any, token: str, prefix: str, secret: str) -> Principal:
        async with pool_conn() as conn:
            cur = await conn.execute(
                """SELECT id, secret_hash, role, source, agency, label FROM api_keys
                   WHERE prefix = %s AND revoked_at IS NULL""",
                (prefix,),
            )
            row = await cur.fetchone()
        if row is None or not secret_matches(secret, row[1]):
            self.cache.drop(token)
            raise Unauthenticated("the API key is unknown or revoked")
        principal = Principal(int(row[0]), prefix, Role(row[2]), row[3], row[4], row[5])
        self.cache.put(token, principal)
        return principal
