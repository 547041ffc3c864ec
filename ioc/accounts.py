"""Officials' accounts: what a valid account is, password hashing (argon2), and reading a CSV
list of officials row by row (a bad row is reported, the good ones are kept)."""

from __future__ import annotations

import csv
import io
import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ioc.auth import Role
from ioc.errors import InvalidInput
from ioc.params import bad, unstorable

USER_ROLES: Final = (Role.OPERATOR, Role.AGENCY, Role.LEADER, Role.ADMIN)
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 256
MAX_NAME: Final = 200
MAX_IMPORT_ROWS: Final = 20_000
CSV_COLUMNS: Final = ("login", "name", "role", "agency")
_LOGIN: Final = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")

# argon2id with the library's defaults (RFC 9106's low-memory choice).
_hasher = PasswordHasher()
# Verified when the login is unknown, so an unknown login costs the same time as a wrong password.
_DUMMY_HASH: Final = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class NewUser:
    """An account as given (validated), before it is stored."""

    login: str
    name: str
    role: Role
    agency: str | None


@dataclass(frozen=True, slots=True)
class RowError:
    """One CSV row that was not imported: its line number, the field and why."""

    line: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` is the one hashed in ``stored_hash`` (None: no such account; the
    same work is done anyway)."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def temporary_password() -> str:
    """A password an admin hands over once (the official changes it)."""
    return secrets.token_urlsafe(12)


def check_login(value: str, field: str = "login") -> str:
    login = value.strip().lower()
    if not _LOGIN.fullmatch(login):
        raise bad(
            field,
            f"{value!r} is not a login: 2–64 of a-z, 0-9, '.', '_', '-', starting with a letter "
            "or digit",
        )
    return login


def check_name(value: str) -> str:
    name = unicodedata.normalize("NFC", " ".join(value.split()))
    reason = unstorable(name)
    if reason is None and not name:
        reason = "empty; the official's full name is needed (e.g. Nguyễn Thị Lan)"
    if reason is None and len(name) > MAX_NAME:
        reason = f"{len(name)} characters; at most {MAX_NAME}"
    if reason is not None:
        raise bad("name", reason)
    return name


def check_password(value: str, field: str = "password") -> str:
    reason = unstorable(value)
    if reason is None and len(value) < MIN_PASSWORD:
        reason = f"at least {MIN_PASSWORD} characters are needed"
    if reason is None and len(value) > MAX_PASSWORD:
        reason = f"at most {MAX_PASSWORD} characters"
    if reason is not None:
        raise bad(field, reason)
    return value


def check_role(value: str, agency: str | None) -> Role:
    accepted = ", ".join(r.value for r in USER_ROLES)
    try:
        role = Role(value.strip().lower())
    except ValueError:
        raise bad("role", f"unknown role {value!r}; accepted: {accepted}") from None
    if role not in USER_ROLES:
        raise bad("role", f"{value!r} is for machines' keys, not people; accepted: {accepted}")
    if role is Role.AGENCY and not agency:
        raise bad("agency", "an agency official needs the agency code they work for")
    return role


def check_user(login: str, name: str, role: str, agency: str | None) -> NewUser:
    """A valid account from what was given; raises InvalidInput naming the field."""
    code = (agency or "").strip() or None
    if code is not None and unstorable(code):
        raise bad("agency", unstorable(code) or "")
    return NewUser(check_login(login), check_name(name), check_role(role, code), code)


def read_csv(data: bytes | bytearray) -> tuple[list[tuple[int, NewUser]], list[RowError]]:
    """The officials of a CSV file (UTF-8, with or without BOM; columns login, name, role,
    agency, in any order, more ignored): (line number, account) for each valid row, and an
    error for each other row."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS if c not in header and c != "agency"]
    if missing:
        raise InvalidInput(
            "the header row lacks " + ", ".join(missing) + "; columns: " + ", ".join(CSV_COLUMNS),
            [{"field": c, "reason": "missing column"} for c in missing],
        )
    reader.fieldnames = header
    valid: list[tuple[int, NewUser]] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if len(valid) + len(errors) >= MAX_IMPORT_ROWS:
            raise InvalidInput(f"more than {MAX_IMPORT_ROWS} rows; split the file")
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        try:
            user = check_user(
                row.get("login") or "",
                row.get("name") or "",
                row.get("role") or "",
                row.get("agency"),
            )
        except InvalidInput as exc:
            detail = (exc.details or [{}])[0]
            errors.append(
                RowError(line, detail.get("field", ""), detail.get("reason", exc.message))
            )
            continue
        if user.login in seen:
            errors.append(
                RowError(line, "login", f"{user.login!r} is also on line {seen[user.login]}")
            )
            continue
        seen[user.login] = line
        valid.append((line, user))
    return valid, errors
