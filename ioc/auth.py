"""API keys, page sessions and roles. Keys and session ids are random; only their SHA-256 is
stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from ioc.errors import Forbidden, InvalidInput, Unauthenticated

KEY_PREFIX = "ioc"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")


class Role(StrEnum):
    SOURCE = "source"  # an ingest source: posts events for its own source name
    OPERATOR = "operator"  # watches the wall map, sees every ticket
    AGENCY = "agency"  # works its own agency's queue
    LEADER = "leader"  # reviews performance
    ADMIN = "admin"  # manages keys, reference data; may post for any source


INGEST_ROLES = frozenset({Role.SOURCE, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id (or, for an official logged in with an account, the user's
    id and login; ``label`` is then their name) and what it may do."""

    key_id: int | None
    prefix: str
    role: Role
    source: str | None = None
    agency: str | None = None
    label: str = ""
    user_id: int | None = None
    login: str | None = None

    def require(self, allowed: frozenset[Role]) -> None:
        if self.role not in allowed:
            raise Forbidden(
                f"a {self.role.value!r} key cannot do this; needs one of: "
                + ", ".join(sorted(r.value for r in allowed))
            )


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly made key: the full token is shown once and never stored."""

    token: str
    prefix: str
    secret_hash: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def make_key() -> NewKey:
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(f"{KEY_PREFIX}_{prefix}_{secret}", prefix, hash_secret(secret))


def split_token(token: str) -> tuple[str, str]:
    """(prefix, secret) of a token; raises Unauthenticated for anything else."""
    token = token.strip()
    parts = token.split("_", 2)
    if (
        not _TOKEN.fullmatch(token)
        or len(parts) != 3
        or parts[0] != KEY_PREFIX
        or not parts[1]
        or not parts[2]
    ):
        raise Unauthenticated("the API key is not of the form ioc_<prefix>_<secret>")
    if not (parts[1].isascii() and parts[1].isalnum()):  # never a NUL or the like to look up
        raise Unauthenticated("the API key is not of the form ioc_<prefix>_<secret>")
    return parts[1], parts[2]


def new_session_id() -> str:
    """A page session's id: 256 random bits, the only thing the browser's cookie holds."""
    return secrets.token_urlsafe(32)


def csrf_token(session_id: str) -> str:
    """The same-origin proof bound to a session: derived from its id, which only the browser's
    HttpOnly cookie and this server know, so another site can neither read nor compute it."""
    return hmac.new(session_id.encode(), b"ioc csrf token", hashlib.sha256).hexdigest()


def csrf_matches(session_id: str, sent: str) -> bool:
    return hmac.compare_digest(csrf_token(session_id).encode(), sent.encode())


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def check_new_key(role: str, source: str | None, agency: str | None) -> Role:
    """Validate what a new key would be; returns its role."""
    try:
        chosen = Role(role)
    except ValueError:
        raise InvalidInput(
            f"unknown role {role!r}; accepted: " + ", ".join(r.value for r in Role)
        ) from None
    if chosen is Role.SOURCE and not source:
        raise InvalidInput("a source key needs --source (the source name it posts for)")
    if chosen is Role.AGENCY and not agency:
        raise InvalidInput("an agency key needs --agency (the agency code it works for)")
    return chosen
