"""The pages: login and logout, the wall map and its data, agency consoles, static files.

Pages authenticate like the API. A browser cannot add a bearer header to a page load, so
``/login`` takes an API key once and opens a server-side session: the browser's HttpOnly,
SameSite=Strict cookie holds only the session's random id, never the key. The API reads that
cookie too (``ioc.api.security``); a request that changes something must also carry the
session's CSRF token (``GET /session``), which the pages' scripts send. A page asked for without
a valid login redirects to the login page; with a key of the wrong role it answers a 403 page.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import secrets
from datetime import date
from functools import cache
from typing import Annotated, Any, Final
from urllib.parse import parse_qs, quote, urlsplit

import msgspec
from fastapi import APIRouter, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from ioc.api.body import read_limited
from ioc.api.security import CrossSiteRefused, SocketGuard, check_same_origin
from ioc.auth import Principal, Role, csrf_token
from ioc.errors import Forbidden, IocError, NotFound, RateLimited, Unauthenticated
from ioc.platform import Platform
from ioc.routing.jurisdictions import LEGAL_ZONE
from ioc.store import livelog
from ioc.store.sessions import end_session, open_session
from maps import areas, assets, console, pages
from maps.wall import data as wall_data
from maps.wall import page as wall
from maps.wall.feed import FeedOverflow, WallFeed, missed_since

WALL_ROLES: Final = frozenset({Role.OPERATOR, Role.ADMIN})
CONSOLE_ROLES: Final = frozenset({Role.OPERATOR, Role.ADMIN, Role.AGENCY})
# The login form's token (kept in a cookie while the form is open) lasts this long (seconds).
LOGIN_FORM_MAX_AGE: Final = 3600
LOGIN_COOKIE: Final = "ioc_login"
SECURE_LOGIN_COOKIE: Final = "__Host-ioc_login"
SESSION_PATH: Final = "/session"
_LOGIN_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
REVIEW_PATH: Final = "/review"
_LOGIN_FORM_LIMIT: Final = 16 * 1024


def landing(who: Principal) -> str:
    """Where a key goes after logging in, by its role."""
    if who.role in WALL_ROLES:
        return wall.WALL_PATH
    if who.role is Role.AGENCY and who.agency:
        return console.console_path(who.agency)
    if who.role is Role.LEADER:
        return REVIEW_PATH
    raise Forbidden(
        f"a {who.role.value!r} key has no pages; the pages are for operator, agency, "
        "leader and admin keys"
    )


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site (no scheme, no host), else None."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target:
        return None
    return target


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        text,
        status,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


def _error_page(exc: IocError) -> HTMLResponse:
    status = 404 if isinstance(exc, NotFound) else 403
    return _html(pages.error_page(status, exc.message), status)


@cache
def _static(directory: str) -> StaticFiles:
    return StaticFiles(directory=directory, follow_symlink=False)


def _json(value: Any) -> Response:
    return Response(
        msgspec.json.encode(value),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def build_pages_router(platform: Platform) -> APIRouter:
    assets.check_installed()  # a missing vendor package fails at start, not on a wall at night
    router = APIRouter()

    async def principal(request: Request) -> Principal | None:
        """The caller, or None when there is no valid key (the page then asks to log in)."""
        try:
            return await platform.authenticate(request)
        except Unauthenticated:
            return None

    # --- login, logout, the session's token ----------------------------------------------

    def secure(request: Request) -> bool:
        return platform.settings.cookie_secure or request.url.scheme == "https"

    def login_cookie() -> str:
        return SECURE_LOGIN_COOKIE if platform.settings.cookie_secure else LOGIN_COOKIE

    def login_form_answer(
        request: Request, target: str, error: str = "", status: int = 200
    ) -> HTMLResponse:
        """The login form with its login token, which the browser also keeps in a cookie:
        a form posted from elsewhere carries neither."""
        nonce = request.cookies.get(login_cookie(), "")
        if not _LOGIN_NONCE.fullmatch(nonce):
            nonce = secrets.token_urlsafe(32)
        response = _html(pages.login_page(target, error=error, csrf=nonce), status)
        response.set_cookie(
            login_cookie(),
            nonce,
            max_age=LOGIN_FORM_MAX_AGE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure(request),
        )
        return response

    @router.get("/login", include_in_schema=False)
    async def login_form(
        request: Request,
        target: Annotated[str | None, Query(alias="next")] = None,
    ) -> HTMLResponse:
        return login_form_answer(request, safe_next(target) or "")

    @router.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await read_limited(request, _LOGIN_FORM_LIMIT)).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        target = safe_next((form.get("next") or [""])[0])
        try:
            check_same_origin(request, require=False)
            nonce = request.cookies.get(login_cookie(), "")
            sent = (form.get("csrf_token") or [""])[0]
            if not nonce or not hmac.compare_digest(nonce.encode(), sent.encode()):
                raise CrossSiteRefused(
                    "biểu mẫu đăng nhập đã hết hạn hoặc không đến từ trang này; hãy thử lại "
                    "(the login form expired or did not come from this site)"
                )
        except CrossSiteRefused as exc:
            return login_form_answer(request, target or "", exc.message, 403)
        try:
            if not key:
                raise Unauthenticated("nhập khóa API (API key) của bạn")
            who = await platform.auth.verify_key(request, key)
            goal = target or landing(who)
        except RateLimited as exc:
            answer = login_form_answer(request, target or "", exc.message, 429)
            answer.headers["Retry-After"] = str(exc.retry_after_s)
            return answer
        except (Unauthenticated, Forbidden) as exc:
            return login_form_answer(request, target or "", exc.message, 401)
        now = platform.clock.now()
        async with platform.pool.connection() as conn:
            previous = platform.auth.session_of(request)
            if previous is not None:
                await end_session(conn, previous, now)
                platform.auth.forget_session(previous)
            session = await open_session(conn, who.key_id, now, platform.settings.session_ttl_s)
        response = RedirectResponse(goal, status_code=303)
        response.set_cookie(
            platform.auth.cookie,
            session,
            max_age=int(platform.settings.session_ttl_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure(request),
        )
        response.delete_cookie(
            login_cookie(), path="/", httponly=True, samesite="strict", secure=secure(request)
        )
        return response

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        try:
            # Browsers send Origin with every form post: one from elsewhere is refused.
            check_same_origin(request, require=True)
        except CrossSiteRefused as exc:
            return _html(pages.error_page(403, exc.message), 403)
        session = platform.auth.session_of(request)
        if session is not None:
            async with platform.pool.connection() as conn:
                await end_session(conn, session, platform.clock.now())
            platform.auth.forget_session(session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            platform.auth.cookie,
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure(request),
        )
        return response

    @router.get(SESSION_PATH, include_in_schema=False)
    async def session_info(request: Request) -> Response:
        """The logged-in page's CSRF token (sent back in X-CSRF-Token) and who it is: for the
        pages' own scripts, with the session cookie; no other origin can read it."""
        session = platform.auth.session_of(request)
        if session is None:
            raise Unauthenticated("no page login: log in at /login")
        check_same_origin(request, require=False)
        who = await platform.auth.verify_session(request, session)
        return _json({"csrf_token": csrf_token(session), "who": who.label or who.role.value})

    # --- static files --------------------------------------------------------------------

    @router.get("/static/vendor/{name}/{path:path}", include_in_schema=False)
    async def vendor_file(request: Request, name: str, path: str) -> Response:
        directory = assets.bundle_dir(name)
        if directory is None:
            raise NotFound(f"no static bundle {name!r}; known: {', '.join(assets.BUNDLES)}")
        response = await _static(str(directory)).get_response(path, request.scope)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response

    @router.get(f"/static/{assets.OWN_BUNDLE}/{{path:path}}", include_in_schema=False)
    async def own_file(request: Request, path: str) -> Response:
        response = await _static(str(assets.OWN_DIR)).get_response(path, request.scope)
        response.headers["Cache-Control"] = "no-cache"
        return response

    # --- the wall ------------------------------------------------------------------------

    @router.get(wall.WALL_PATH, include_in_schema=False)
    async def wall_page(request: Request, kiosk: str | None = None) -> Response:
        who = await principal(request)
        if who is None:
            return _to_login(request)
        try:
            who.require(WALL_ROLES)
        except Forbidden as exc:
            return _error_page(exc)
        async with platform.pool.connection() as conn:
            labels = await wall_data.labels(conn)
        desk = platform.desk
        boundaries = (
            areas.finest_in_force(desk.router.sets, _today(platform)) if desk is not None else None
        )
        page = wall.WallPage(
            tiles=platform.settings.map_tiles,
            boundaries=boundaries,
            labels=labels,
            kiosk=(kiosk or "").lower() in ("1", "true", "yes", "on"),
            due_soon_fraction=platform.settings.sla_due_soon_fraction,
            who=who.label or who.role.value,
        )
        return _html(await asyncio.to_thread(wall.render_wall, page))

    @router.get(
        wall.SNAPSHOT_PATH,
        tags=["wall"],
        summary="The wall map's data: open tickets, sensors with their latest reading, active "
        "alerts (compact rows), and a cursor for /v1/wall/changes",
    )
    async def wall_snapshot(request: Request) -> Response:
        who = await platform.authenticate(request)
        who.require(WALL_ROLES)
        async with platform.pool.connection() as conn:
            found = await wall_data.snapshot(
                conn, platform.clock.now(), platform.settings.pool_timeout_s
            )
        return _json(found)

    @router.get(
        wall.CHANGES_PATH,
        tags=["wall"],
        summary="Tickets changed since a cursor (any state), and the current alerts and "
        "sensors; reload: true when the cursor is over an hour old",
    )
    async def wall_changes(
        request: Request,
        since: Annotated[str, Query(description="the cursor of the previous snapshot or changes")],
    ) -> Response:
        who = await platform.authenticate(request)
        who.require(WALL_ROLES)
        moment = wall_data.parse_since(since)
        async with platform.pool.connection() as conn:
            found = await wall_data.changes(
                conn, moment, platform.clock.now(), platform.settings.pool_timeout_s
            )
        return _json(found)

    @router.websocket(wall.FEED_PATH)
    async def wall_feed(socket: WebSocket) -> None:
        """Ticket rows, alerts and readings as they change (operators and admins)."""
        try:
            who = await platform.authenticate(socket)
            who.require(WALL_ROLES)
            after = livelog.parse_after(socket.query_params.get("after"))
        except IocError as exc:
            await socket.accept()
            await socket.close(code=1008, reason=exc.message[:120])
            return
        if platform.hub.backend_pid is None:
            # Not listening: a page connected now would hear nothing. It retries and then
            # catches up, so nothing is lost while the hub reconnects.
            await socket.accept()
            await socket.close(code=1013, reason="the live feed is reconnecting; try again")
            return
        subscription = platform.hub.subscribe(lambda _: True)
        try:
            await socket.accept()
            missed = await missed_since(platform.pool, subscription, after)
            feed = WallFeed(subscription, platform.pool, missed)
            await _stream(socket, feed, SocketGuard.of(socket, platform.auth))
        finally:
            subscription.close()

    # --- agency consoles -----------------------------------------------------------------

    @router.get(console.CONSOLE_PREFIX + "/{code}", include_in_schema=False)
    async def console_page(
        request: Request, code: Annotated[str, Path(max_length=200)]
    ) -> Response:
        who = await principal(request)
        if who is None:
            return _to_login(request)
        try:
            console.check_access(who, code)
            async with platform.pool.connection() as conn:
                labels = await wall_data.labels(conn)
            if code not in labels.agencies:
                raise NotFound(f"no agency {code!r}")
        except (Forbidden, NotFound) as exc:
            return _error_page(exc)
        desk = platform.desk
        boundaries = (
            areas.finest_in_force(desk.router.sets, _today(platform)) if desk is not None else None
        )
        page = console.ConsolePage(
            code=code,
            tiles=platform.settings.map_tiles,
            extent=areas.bounds(boundaries),
            labels=labels,
            due_soon_fraction=platform.settings.sla_due_soon_fraction,
            who=who.label or who.role.value,
            sees_wall=who.role in WALL_ROLES,
            server_time=wall_data.millis(platform.clock.now()) or 0,
        )
        return _html(await asyncio.to_thread(console.render_console, page))

    return router


def _today(platform: Platform) -> date:
    return platform.clock.now().astimezone(LEGAL_ZONE).date()


async def _stream(socket: WebSocket, feed: WallFeed, guard: SocketGuard) -> None:
    overflow = False

    async def send() -> None:
        nonlocal overflow
        try:
            async for text in feed.batches():
                await socket.send_text(text)
        except FeedOverflow:
            overflow = True

    async def drain() -> None:
        # The page only listens; reading is how a closed connection (or, through the guard,
        # an ended login) is noticed.
        while (await guard.receive())["type"] != "websocket.disconnect":
            pass

    sender = asyncio.create_task(send())
    reader = asyncio.create_task(drain())
    try:
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, reader):
            task.cancel()
        await asyncio.gather(sender, reader, return_exceptions=True)
        guard.stop()
    if sender in done and not sender.cancelled() and sender.exception() is None:
        # The feed ended: the page fell behind, or the hub stopped. The page reconnects and
        # catches up from its cursor.
        slow = overflow or feed.dropped
        code, reason = (1013, "too slow: reconnect") if slow else (1012, "feed restarting")
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await socket.close(code=code, reason=reason)
