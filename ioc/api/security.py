"""Who is calling, and whether the request may be trusted to come from them.

Machines send an API key (``Authorization: Bearer``, ``X-API-Key``; ``?api_key=`` only on
WebSocket handshakes and the Open311 routes, whose spec puts it there). Pages send the session
cookie that ``/login`` sets. A browser attaches that cookie to requests other pages make too, so
a cookie-authenticated request that changes something must prove it comes from our own pages:
Origin and Sec-Fetch-Site, when sent, name this origin, and the ``X-CSRF-Token`` header carries
the token bound to the session. A cookie-authenticated WebSocket handshake must come from this
origin. Failed authentications are limited per client address (a credential already seen to
work is still served from a throttled address), and open WebSockets re-check their credential
within the key-cache lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import HTTPConnection
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from ioc.api.throttle import FailureLimiter, KnownGood, client_address
from ioc.auth import Principal, csrf_matches
from ioc.clock import Clock
from ioc.errors import Forbidden, IocError, Unauthenticated
from ioc.settings import Settings
from ioc.store.keys import KeyVerifier
from ioc.store.sessions import SessionVerifier
from ioc.store.users import verify_password

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "ioc_session"
# Over https the cookie takes the __Host- prefix: Secure, Path=/, no Domain, so a plain-http
# service elsewhere on the host cannot set one of its own.
SECURE_SESSION_COOKIE: Final = "__Host-ioc_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN311_PREFIX: Final = "/open311/"
# A closed socket's code when its key, or its login, has ended (policy violation).
POLICY_VIOLATION: Final = 1008


class CrossSiteRefused(Forbidden):
    code = "cross_site_request"


@dataclass(frozen=True, slots=True)
class Credential:
    kind: Literal["key", "session"]
    value: str


def session_cookie(settings: Settings) -> str:
    return SECURE_SESSION_COOKIE if settings.cookie_secure else SESSION_COOKIE


def _query_key_allowed(conn: HTTPConnection) -> bool:
    return conn.scope["type"] == "websocket" or conn.url.path.startswith(OPEN311_PREFIX)


def key_in_headers_or_query(conn: HTTPConnection) -> str | None:
    """The API key from ``Authorization: Bearer`` or ``X-API-Key``; else from ``?api_key=``
    where that is accepted. A key in the URL elsewhere is refused (URLs end up in logs)."""
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = conn.headers.get("x-api-key")
    if token:
        return token
    if "api_key" in conn.query_params:
        if not _query_key_allowed(conn):
            raise Unauthenticated(
                "an api_key in the URL is accepted only on WebSocket handshakes and the Open311 "
                "routes; send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        return conn.query_params["api_key"]
    return None


def token_of(conn: HTTPConnection) -> str:
    """The API key a machine sent (see ``key_in_headers_or_query``); raises when there is none."""
    token = key_in_headers_or_query(conn)
    if not token:
        raise Unauthenticated(
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )
    return token


def credential_of(conn: HTTPConnection, cookie: str) -> Credential:
    token = key_in_headers_or_query(conn)
    if token:
        return Credential("key", token)
    session = conn.cookies.get(cookie)
    if session:
        return Credential("session", session)
    raise Unauthenticated(
        "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        " (pages: log in at /login)"
    )


# --- same-origin checks ---------------------------------------------------------------------


def _host_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    try:
        parts = urlsplit("//" + netloc)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host.lower(), port or default_port


def is_same_origin(origin: str, conn: HTTPConnection) -> bool:
    """Whether an Origin header names the host this request was sent to."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.path or parts.query:
        return False
    default = 443 if parts.scheme == "https" else 80
    theirs = _host_port(parts.netloc, default)
    # A Host header without a port means the default port of the scheme the browser used
    # (behind a TLS proxy, the server itself may see plain http).
    ours = _host_port(conn.headers.get("host", ""), default)
    return theirs is not None and theirs == ours


def check_same_origin(conn: HTTPConnection, *, require: bool) -> None:
    """Refuse a request a browser says came from another origin. With ``require``, a request
    that says nothing (no Origin, no Sec-Fetch-Site) is refused too: browsers always send them
    where this is required (WebSocket handshakes, form posts)."""
    site = conn.headers.get("sec-fetch-site")
    origin = conn.headers.get("origin")
    if site is not None and site != "same-origin":
        raise CrossSiteRefused(f"refused: the request came from another site ({site})")
    if origin is not None and not is_same_origin(origin, conn):
        raise CrossSiteRefused("refused: the request came from another origin")
    if require and site is None and origin is None:
        raise CrossSiteRefused("refused: the request does not say where it came from (Origin)")


def check_csrf(conn: HTTPConnection, session_id: str) -> None:
    """A cookie-authenticated request that changes something: same origin, and the session's
    token in the X-CSRF-Token header (which only our pages' scripts can read and send)."""
    check_same_origin(conn, require=False)
    sent = conn.headers.get(CSRF_HEADER.lower(), "")
    if not sent or not csrf_matches(session_id, sent):
        raise CrossSiteRefused(
            f"refused: a logged-in page's request must carry the {CSRF_HEADER} header "
            "(GET /session gives it)"
        )


# --- failed authentication, limited per client -------------------------------------------


# --- the authenticator ----------------------------------------------------------------------


class Authenticator:
    """Verifies keys and sessions for the platform (one per process)."""

    def __init__(self, settings: Settings, connect: Callable[[], Any], clock: Clock) -> None:
        self.keys = KeyVerifier(settings.key_cache_s)
        self.sessions = SessionVerifier(settings.key_cache_s)
        self.limiter = FailureLimiter(settings.auth_failure_burst, settings.auth_failure_per_minute)
        self.known = KnownGood()
        self.cookie = session_cookie(settings)
        # Open sockets re-check their credential this often: with the cache's own lifetime,
        # a revoked key or ended login closes them within key_cache_s.
        self.recheck_s = max(settings.key_cache_s, 1.0) / 2
        self._connect = connect
        self._clock = clock

    def session_of(self, conn: HTTPConnection) -> str | None:
        return conn.cookies.get(self.cookie) or None

    async def authenticate(self, conn: HTTPConnection, max_age: float | None = None) -> Principal:
        credential = credential_of(conn, self.cookie)
        if credential.kind == "key":
            return await self._limited(conn, credential, max_age)
        if conn.scope["type"] == "websocket":
            check_same_origin(conn, require=True)
        elif conn.scope.get("method", "GET") not in SAFE_METHODS:
            check_csrf(conn, credential.value)
        return await self._limited(conn, credential, max_age)

    async def verify_session(self, conn: HTTPConnection, session_id: str) -> Principal:
        return await self._limited(conn, Credential("session", session_id), None)

    async def verify_key(self, conn: HTTPConnection, token: str) -> Principal:
        """A key given some other way (the login form, an Open311 form field)."""
        return await self._limited(conn, Credential("key", token), None)

    async def _limited(
        self, conn: HTTPConnection, credential: Credential, max_age: float | None
    ) -> Principal:
        cache = self.keys.cache if credential.kind == "key" else self.sessions.cache
        trusted = cache.get(credential.value, max_age)
        if trusted is not None:  # verified (so well-formed) within the cache's lifetime
            return trusted
        address = client_address(conn)
        if credential not in self.known:
            # A credential never seen to work is a guess until the database says otherwise;
            # telling a new good key from a guess would cost the query the throttle saves.
            self.limiter.check(address)
        try:
            principal = await self._verify(credential, max_age)
        except Unauthenticated:
            self.known.discard(credential)
            self.limiter.failed(address)
            raise
        self.known.add(credential)
        return principal

    async def _verify(self, credential: Credential, max_age: float | None) -> Principal:
        if credential.kind == "key":
            return await self.keys.verify(self._connect, credential.value, max_age)
        return await self.sessions.verify(
            self._connect, credential.value, self._clock.now(), max_age
        )

    def forget_session(self, session_id: str) -> None:
        self.sessions.cache.drop(session_id)

    def forget_user(self, user_id: int) -> None:
        """Stop trusting this process's cached sessions of an official (disabled, reset)."""
        self.sessions.cache.drop_where(lambda who: who.user_id == user_id)

    async def verify_password(self, conn: HTTPConnection, login: str, password: str) -> Principal:
        """An official's login and password; a failure counts like a wrong key."""
        address = client_address(conn)
        self.limiter.check(address)
        try:
            async with self._connect() as db:
                return await verify_password(db, login, password)
        except Unauthenticated:
            self.limiter.failed(address)
            raise


class SocketGuard:
    """Receives from an open WebSocket while re-checking its credential every ``interval``
    seconds; when the key is revoked or the login ended, the socket is closed with 1008 and
    ``receive`` answers a disconnect."""

    def __init__(
        self, socket: WebSocket, recheck: Callable[[], Awaitable[object]], interval: float
    ) -> None:
        self._socket = socket
        self._recheck = recheck
        self._interval = interval
        self._pending: asyncio.Task[Message] | None = None
        self.closed_for: str | None = None

    @classmethod
    def of(cls, socket: WebSocket, auth: Authenticator) -> SocketGuard:
        interval = auth.recheck_s
        return cls(socket, lambda: auth.authenticate(socket, max_age=interval), interval)

    async def receive(self) -> Message:
        while True:
            if self._pending is None:
                self._pending = asyncio.ensure_future(self._socket.receive())
            done, _ = await asyncio.wait({self._pending}, timeout=self._interval)
            message: Message | None = None
            if done:
                message, self._pending = self._pending.result(), None
                if message["type"] == "websocket.disconnect":
                    return message
            if not await self._still_valid():
                return {"type": "websocket.disconnect", "code": POLICY_VIOLATION}
            if message is not None:
                return message

    async def _still_valid(self) -> bool:
        try:
            await self._recheck()
        except (Unauthenticated, Forbidden) as exc:
            self.closed_for = exc.message
            await self.close(exc.message)
            return False
        except (IocError, psycopg.OperationalError, PoolTimeout) as exc:
            # Not a verdict on the key (the database is away, or too many failures from
            # elsewhere on this address): keep the socket and ask again next time.
            log.warning("could not re-check a websocket's credential: %s", exc)
        return True

    async def close(self, reason: str) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(BaseException):
                await self._pending
            self._pending = None
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await self._socket.close(code=POLICY_VIOLATION, reason=reason[:120])

    def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


# --- secrets never reach a log --------------------------------------------------------------


Authenticate = Callable[[HTTPConnection], Awaitable[Principal]]
