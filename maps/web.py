"""The pages: the wall map and its data, agency consoles, static files (login: ``maps.login``).

Pages authenticate like the API. A browser cannot add a bearer header to a page load, so
``/login`` takes an official's password (or an API key) once and opens a server-side session:
the browser's HttpOnly, SameSite=Strict cookie holds only the session's random id. The API reads that
cookie too (``ioc.api.security``); a request that changes something must also carry the
session's CSRF token (``GET /session``), which the pages' scripts send. A page asked for without
a valid login redirects to the login page; with a key of the wrong role it answers a 403 page.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date
from functools import cache
from typing import Annotated, Final
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from ioc.api.feeds import send_all, wants_batches
from ioc.api.security import SocketGuard
from ioc.auth import Principal, Role
from ioc.errors import Forbidden, IocError, NotFound, Unauthenticated
from ioc.live import everything
from ioc.platform import Platform
from ioc.routing.jurisdictions import LEGAL_ZONE
from ioc.store import livelog
from ioc.store.users import list_users
from maps import areas, assets, console, pages, triage
from maps.login import WALL_ROLES, add_login_routes, html_answer, json_answer, who_shown
from maps.sso import add_sso_routes
from maps.wall import data as wall_data
from maps.wall import page as wall
from maps.wall.feed import FeedOverflow, WallFeed, missed_since
from maps.wall.shared import WallReads

CONSOLE_ROLES: Final = frozenset({Role.OPERATOR, Role.ADMIN, Role.AGENCY})
_html = html_answer
_json = json_answer


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


def _error_page(exc: IocError) -> HTMLResponse:
    status = 404 if isinstance(exc, NotFound) else 403
    return _html(pages.error_page(status, exc.message), status)


@cache
def _static(directory: str) -> StaticFiles:
    return StaticFiles(directory=directory, follow_symlink=False)


def build_pages_router(platform: Platform) -> APIRouter:
    assets.check_installed()  # a missing vendor package fails at start, not on a wall at night
    router = APIRouter()
    wall_reads = WallReads.of(platform)  # board reads shared by every wall page's feed

    async def principal(request: Request) -> Principal | None:
        """The caller, or None when there is no valid key (the page then asks to log in)."""
        try:
            return await platform.authenticate(request)
        except Unauthenticated:
            return None

    add_login_routes(router, platform)
    add_sso_routes(router, platform)

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
            who=who_shown(who),
            playlist=tuple(platform.settings.wall_steps()),
            centre=platform.settings.wall_centre,
            triage=who.role in triage.TRIAGE_ROLES,
            photos=platform.settings.media_on_wall,
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
        async with platform.read_pool.connection() as conn:
            found = await wall_data.snapshot(conn, platform.clock.now(), platform.settings)
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
            found = await wall_data.changes(conn, moment, platform.clock.now(), platform.settings)
        return _json(found)

    @router.websocket(wall.FEED_PATH)
    async def wall_feed(socket: WebSocket) -> None:
        """Ticket rows, alerts and readings as they change (operators and admins)."""
        try:
            who = await platform.authenticate(socket)
            who.require(WALL_ROLES)
            after = livelog.parse_after(socket.query_params.get("after"))
            batched = wants_batches(socket.query_params.get("batch"))
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
        subscription = platform.hub.subscribe(everything)
        try:
            await socket.accept()
            missed = await missed_since(platform.pool, subscription, after)
            feed = WallFeed(subscription, platform.pool, missed, wall_reads)
            await _stream(socket, feed, SocketGuard.of(socket, platform.auth), batched)
        finally:
            subscription.close()

    router.include_router(triage.build_triage_router(platform))  # the operators' triage page

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
                officials = await list_users(conn, code)
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
            who=who_shown(who),
            sees_wall=who.role in WALL_ROLES,
            server_time=wall_data.millis(platform.clock.now()) or 0,
            me=who.login,
            officials=tuple((u.login, u.name) for u in officials),
        )
        return _html(await asyncio.to_thread(console.render_console, page))

    return router


def _today(platform: Platform) -> date:
    return platform.clock.now().astimezone(LEGAL_ZONE).date()


async def _stream(socket: WebSocket, feed: WallFeed, guard: SocketGuard, batched: bool) -> None:
    overflow = False

    async def send() -> None:
        nonlocal overflow
        try:
            async for texts in feed.batches():
                await send_all(socket, texts, batched)
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
