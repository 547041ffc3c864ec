"""Page sessions at rest: an opaque id per login, stored as its SHA-256, ended by logout, by
expiry, by revoking the key it was opened with, or by disabling the official's account or
resetting its password."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from ioc.auth import Principal, Role, hash_secret, new_session_id
from ioc.errors import Unauthenticated
from ioc.store.keys import TrustCache
from ioc.store.users import principal_of

Conn = psycopg.AsyncConnection[Any]
# Ended sessions are kept this long (for the record of who was logged in), then deleted.
_KEEP_ENDED = timedelta(days=30)


async def open_session(
    conn: Conn, key_id: int | None, now: datetime, ttl_s: float, *, user_id: int | None = None
) -> str:
    """A new session for a verified key or official; returns its id (shown once, to the
    browser)."""
    session_id = new_session_id()
    await conn.execute(
        "DELETE FROM sessions WHERE expires_at < %s OR revoked_at < %s",
        (now - _KEEP_ENDED, now - _KEEP_ENDED),
    )
    await conn.execute(
        """INSERT INTO sessions (id_hash, key_id, user_id, created_at, expires_at)
           VALUES (%s, %s, %s, %s, %s)""",
        (hash_secret(session_id), key_id, user_id, now, now + timedelta(seconds=ttl_s)),
    )
    return session_id


async def end_session(conn: Conn, session_id: str, now: datetime) -> bool:
    """Revoke a session; False when it was not open."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %s WHERE id_hash = %s AND revoked_at IS NULL",
        (now, hash_secret(session_id)),
    )
    return cur.rowcount == 1


class SessionVerifier:
    """Finds the key or official behind a session id; like keys, trusted for ``cache_s``
    seconds."""

    def __init__(self, cache_s: float) -> None:
        self.cache = TrustCache(cache_s)

    async def verify(
        self, pool_conn: Any, session_id: str, now: datetime, max_age: float | None = None
    ) -> Principal:
        cached = self.cache.get(session_id, max_age)
        if cached is not None:
            return cached
        async with pool_conn() as conn:
            cur = await conn.execute(
                """SELECT k.id, k.prefix, k.role, k.source, k.agency, k.label,
                          u.id, u.login, u.name, u.role, u.agency
                   FROM sessions s
                   LEFT JOIN api_keys k ON k.id = s.key_id AND k.revoked_at IS NULL
                   LEFT JOIN users u ON u.id = s.user_id AND u.disabled_at IS NULL
                   WHERE s.id_hash = %s AND s.revoked_at IS NULL AND s.expires_at > %s
                     AND (k.id IS NOT NULL OR u.id IS NOT NULL)""",
                (hash_secret(session_id), now),
            )
            row = await cur.fetchone()
        if row is None:
            self.cache.drop(session_id)
            raise Unauthenticated(
                "the login has ended (logged out, expired, key revoked or account disabled)"
            )
        if row[6] is not None:
            principal = principal_of(int(row[6]), row[7], row[8], row[9], row[10])
        else:
            principal = Principal(int(row[0]), row[1], Role(row[2]), row[3], row[4], row[5])
        self.cache.put(session_id, principal)
        return principal
