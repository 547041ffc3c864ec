"""Officials' accounts at rest: create, list, disable and enable, passwords, CSV import, and the
check that a login and password are right. Disabling an account or resetting its password ends
its page sessions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ioc.accounts import (
    NewUser,
    RowError,
    check_login,
    check_password,
    hash_password,
    password_matches,
    temporary_password,
)
from ioc.auth import Principal, Role, hash_secret
from ioc.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from ioc.params import bad

Conn = psycopg.AsyncConnection[Any]

_COLUMNS = "id, login, name, role, agency, created_at, password_at, disabled_at"


@dataclass(frozen=True)
class UserInfo:
    id: int
    login: str
    name: str
    role: str
    agency: str | None
    created_at: datetime
    password_at: datetime
    disabled_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "name": self.name,
            "role": self.role,
            "agency": self.agency,
            "created_at": self.created_at,
            "password_at": self.password_at,
            "disabled": self.disabled_at is not None,
            "disabled_at": self.disabled_at,
        }


def principal_of(user_id: int, login: str, name: str, role: str, agency: str | None) -> Principal:
    return Principal(None, "", Role(role), None, agency, name, user_id, login)


async def _agency_known(conn: Conn, agency: str | None) -> bool:
    if agency is None:
        return True
    cur = await conn.execute("SELECT 1 FROM agencies WHERE code = %s", (agency,))
    return await cur.fetchone() is not None


async def create_user(
    conn: Conn, user: NewUser, password: str | None, now: datetime
) -> tuple[UserInfo, str]:
    """Store a new account; returns it and its password (a temporary one when none is given,
    to be handed over once)."""
    chosen = check_password(password) if password is not None else temporary_password()
    if not await _agency_known(conn, user.agency):
        raise bad("agency", f"{user.agency!r} is not a known agency code")
    hashed = await asyncio.to_thread(hash_password, chosen)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""INSERT INTO users (login, name, password_hash, role, agency, created_at,
                                   password_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (login) DO NOTHING RETURNING {_COLUMNS}""",
            (user.login, user.name, hashed, user.role.value, user.agency, now, now),
        )
        row = await cur.fetchone()
    if row is None:
        raise Conflict(f"an account with login {user.login!r} exists (disable or reset it)")
    return UserInfo(**row), chosen


async def list_users(
    conn: Conn, agency: str | None = None, include_disabled: bool = False
) -> list[UserInfo]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM users
                WHERE (%(agency)s::text IS NULL OR agency = %(agency)s)
                  AND (%(all)s OR disabled_at IS NULL)
                ORDER BY agency NULLS FIRST, login""",
            {"agency": agency, "all": include_disabled},
        )
        return [UserInfo(**row) for row in await cur.fetchall()]


async def get_user(conn: Conn, login: str) -> UserInfo:
    try:
        code = check_login(login)
    except InvalidInput:
        code = ""  # no account has it
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM users WHERE login = %s", (code,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no account with login {login!r} (see `ioc users list`)")
    return UserInfo(**row)


async def _end_sessions(conn: Conn, user_id: int, now: datetime, keep: str | None = None) -> None:
    await conn.execute(
        """UPDATE sessions SET revoked_at = %s
           WHERE user_id = %s AND revoked_at IS NULL AND id_hash IS DISTINCT FROM %s""",
        (now, user_id, hash_secret(keep) if keep else None),
    )


async def set_disabled(conn: Conn, login: str, disabled: bool, now: datetime) -> UserInfo:
    """Disable (ending the account's sessions) or enable an account; its history stays."""
    user = await get_user(conn, login)
    async with conn.transaction():
        await conn.execute(
            "UPDATE users SET disabled_at = %s WHERE id = %s",
            (now if disabled else None, user.id),
        )
        if disabled:
            await _end_sessions(conn, user.id, now)
    return await get_user(conn, login)


async def reset_password(
    conn: Conn, login: str, password: str | None, now: datetime
) -> tuple[UserInfo, str]:
    """An admin sets a new password (a temporary one when none is given); the account's
    sessions end. Returns the account and the password to hand over."""
    chosen = check_password(password) if password is not None else temporary_password()
    user = await get_user(conn, login)
    hashed = await asyncio.to_thread(hash_password, chosen)
    async with conn.transaction():
        await conn.execute(
            "UPDATE users SET password_hash = %s, password_at = %s WHERE id = %s",
            (hashed, now, user.id),
        )
        await _end_sessions(conn, user.id, now)
    return await get_user(conn, login), chosen


async def change_password(
    conn: Conn, user_id: int, current: str, new: str, now: datetime, keep: str | None
) -> None:
    """An official changes their own password, giving the current one; their other sessions
    end (``keep``: the session they are using)."""
    check_password(new, "new_password")
    cur = await conn.execute(
        "SELECT password_hash FROM users WHERE id = %s AND disabled_at IS NULL", (user_id,)
    )
    row = await cur.fetchone()
    if not await asyncio.to_thread(password_matches, row[0] if row else None, current):
        raise bad("current_password", "is not the account's current password")
    hashed = await asyncio.to_thread(hash_password, new)
    async with conn.transaction():
        await conn.execute(
            "UPDATE users SET password_hash = %s, password_at = %s WHERE id = %s",
            (hashed, now, user_id),
        )
        await _end_sessions(conn, user_id, now, keep)


async def verify_password(conn: Conn, login: str, password: str) -> Principal:
    """The official whose login and password these are; raises Unauthenticated otherwise
    (the same answer whether the login is unknown, disabled or the password wrong)."""
    try:
        login = check_login(login)
    except InvalidInput:
        login = ""
    cur = await conn.execute(
        "SELECT id, password_hash, name, role, agency FROM users "
        "WHERE login = %s AND disabled_at IS NULL",
        (login,),
    )
    row = await cur.fetchone()
    if not await asyncio.to_thread(password_matches, row[1] if row else None, password):
        raise Unauthenticated("tên đăng nhập hoặc mật khẩu không đúng (wrong login or password)")
    assert row is not None
    return principal_of(int(row[0]), login, row[2], row[3], row[4])


async def import_users(
    conn: Conn, rows: list[tuple[int, NewUser]], now: datetime
) -> tuple[list[tuple[UserInfo, str]], list[RowError]]:
    """Create each valid row's account with a temporary password; a row whose login exists or
    whose agency is unknown is reported, the others are kept."""
    created: list[tuple[UserInfo, str]] = []
    errors: list[RowError] = []
    for line, user in rows:
        try:
            created.append(await create_user(conn, user, None, now))
        except Conflict as exc:
            errors.append(RowError(line, "login", exc.message))
        except InvalidInput as exc:
            detail = (exc.details or [{}])[0]
            errors.append(
                RowError(line, detail.get("field", ""), detail.get("reason", exc.message))
            )
    return created, errors


async def official_of(conn: Conn, login: str, agency: str | None) -> tuple[str, str]:
    """(login, name) of the active official of ``agency`` named by ``login``; raises a 422
    naming the ``assignee`` field otherwise."""
    try:
        code = check_login(login, "assignee")
    except InvalidInput:
        code = ""
    cur = await conn.execute(
        "SELECT agency, name FROM users WHERE login = %s AND disabled_at IS NULL", (code,)
    )
    row = await cur.fetchone()
    if row is None:
        raise bad("assignee", f"{login!r} is not the login of an active official")
    if agency is None or row[0] != agency:
        raise bad(
            "assignee",
            f"{login!r} is not an official of the ticket's agency {agency!r} (see GET /v1/users)",
        )
    return code, str(row[1])
