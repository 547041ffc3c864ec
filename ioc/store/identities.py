"""Single sign-on at rest: logins begun at the province's provider and not yet back (taken
once), and the link between the provider's person (issuer + subject) and an official's account,
made on their first login: to the account with the same login when one exists and is not linked
to someone else, else to a new account (without a password). Each login brings the account's
name, role and agency up to date with the provider's claims; a disabled account stays refused."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from ioc.auth import Principal, hash_secret
from ioc.sso.client import PendingLogin
from ioc.sso.mapping import Person, SsoRefused
from ioc.store.users import principal_of

Conn = psycopg.AsyncConnection[Any]
log = logging.getLogger(__name__)

# A login begun at the provider must come back within this long.
PENDING_MAX_AGE: Final = timedelta(minutes=15)


async def save_pending(conn: Conn, pending_id: str, pending: PendingLogin, now: datetime) -> None:
    """Keep a begun login under the hash of ``pending_id`` (the browser's cookie holds the id);
    logins begun too long ago are forgotten."""
    await conn.execute("DELETE FROM oidc_pending WHERE created_at < %s", (now - PENDING_MAX_AGE,))
    await conn.execute(
        """INSERT INTO oidc_pending (id_hash, state, nonce, code_verifier, redirect_uri,
                                     next_path, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (
            hash_secret(pending_id),
            pending.state,
            pending.nonce,
            pending.code_verifier,
            pending.redirect_uri,
            pending.next_path,
            now,
        ),
    )


async def take_pending(conn: Conn, pending_id: str, now: datetime) -> PendingLogin | None:
    """The begun login of ``pending_id``, removed (a callback is good once); None when there is
    none or it is too old."""
    cur = await conn.execute(
        """DELETE FROM oidc_pending WHERE id_hash = %s
           RETURNING state, nonce, code_verifier, redirect_uri, next_path, created_at""",
        (hash_secret(pending_id),),
    )
    row = await cur.fetchone()
    if row is None or row[5] < now - PENDING_MAX_AGE:
        return None
    return PendingLogin(row[0], row[1], row[2], row[3], row[4])


def _refuse(person: Person, reason: str) -> SsoRefused:
    return SsoRefused(f"{reason} [{person.login}, subject {person.subject}]")


async def official_for(conn: Conn, person: Person, now: datetime) -> Principal:
    """The account of the provider's person, linked or created on their first login and
    brought up to date; raises SsoRefused (logged) for a disabled account, an unknown agency or
    a login that belongs to another of the provider's people."""
    async with conn.transaction():
        if person.agency is not None:
            cur = await conn.execute("SELECT 1 FROM agencies WHERE code = %s", (person.agency,))
            if await cur.fetchone() is None:
                raise _refuse(
                    person,
                    f"cơ quan {person.agency!r} của tài khoản tỉnh không có trong danh sách cơ "
                    "quan của Trung tâm IOC (unknown agency code; see IOC_OIDC_AGENCY_MAP)",
                )
        cur = await conn.execute(
            """SELECT u.id, u.login, u.disabled_at FROM user_identities i
               JOIN users u ON u.id = i.user_id
               WHERE i.issuer = %s AND i.subject = %s FOR UPDATE OF u""",
            (person.issuer, person.subject),
        )
        row = await cur.fetchone()
        if row is None:
            row = await _link(conn, person, now)
        user_id, login, disabled_at = int(row[0]), str(row[1]), row[2]
        if disabled_at is not None:
            raise _refuse(
                person,
                f"tài khoản {login!r} đã bị khóa; hãy liên hệ quản trị viên "
                "(the account is disabled)",
            )
        await conn.execute(
            "UPDATE users SET name = %s, role = %s, agency = %s WHERE id = %s",
            (person.name, person.role.value, person.agency, user_id),
        )
        await conn.execute(
            """UPDATE user_identities SET last_login_at = %s
               WHERE issuer = %s AND subject = %s""",
            (now, person.issuer, person.subject),
        )
    return principal_of(user_id, login, person.name, person.role.value, person.agency)


async def _link(conn: Conn, person: Person, now: datetime) -> tuple[Any, ...]:
    """(id, login, disabled_at) of the account the person's first login links to."""
    await conn.execute(
        """INSERT INTO users (login, name, password_hash, role, agency, created_at, password_at)
           VALUES (%s, %s, NULL, %s, %s, %s, %s) ON CONFLICT (login) DO NOTHING""",
        (person.login, person.name, person.role.value, person.agency, now, now),
    )
    cur = await conn.execute(
        """SELECT u.id, u.login, u.disabled_at,
                  EXISTS (SELECT 1 FROM user_identities i
                          WHERE i.user_id = u.id AND i.issuer = %s)
           FROM users u WHERE u.login = %s FOR UPDATE""",
        (person.issuer, person.login),
    )
    row = await cur.fetchone()
    assert row is not None
    if row[3]:
        raise _refuse(
            person,
            f"tên đăng nhập {person.login!r} đã gắn với một người khác của máy chủ đăng nhập "
            "tỉnh; hãy liên hệ quản trị viên (the login belongs to another of the provider's "
            "people)",
        )
    await conn.execute(
        """INSERT INTO user_identities (issuer, subject, user_id, created_at, last_login_at)
           VALUES (%s, %s, %s, %s, %s)""",
        (person.issuer, person.subject, row[0], now, now),
    )
    log.info(
        "single sign-on: %s of %s linked to the account %s", person.subject, person.issuer, row[1]
    )
    return (row[0], row[1], row[2])
