"""The pages' login: an official's login and password (or, for machines and old habits, an API
key) opens a server-side session; logout ends it; ``/session`` gives the pages' scripts the
session's CSRF token and who is logged in.

The browser's HttpOnly, SameSite=Strict cookie holds only the session's random id, never the
key or the password. Failed logins, by password or by key, spend the same per-address
failed-authentication budget (``ioc.api.security``).
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Annotated, Any, Final
from urllib.parse import parse_qs, urlsplit

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ioc.api.body import read_body
from ioc.api.security import CrossSiteRefused, check_same_origin
from ioc.auth import Principal, Role, csrf_token
from ioc.errors import Forbidden, RateLimited, Unauthenticated
from ioc.platform import Platform
from ioc.store.sessions import end_session, open_session
from maps import console, pages
from maps.wall import page as wall

WALL_ROLES: Final = frozenset({Role.OPERATOR, Role.ADMIN})
# The login form's token (kept in a cookie while the form is open) lasts this long (seconds).
LOGIN_FORM_MAX_AGE: Final = 3600
LOGIN_COOKIE: Final = "ioc_login"
SECURE_LOGIN_COOKIE: Final = "__Host-ioc_login"
SESSION_PATH: Final = "/session"
REVIEW_PATH: Final = "/review"
_LOGIN_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_LOGIN_FORM_LIMIT: Final = 16 * 1024


def landing(who: Principal) -> str:
    """Where a key or an official goes after logging in, by role."""
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


def who_shown(who: Principal) -> str:
    """How a page names whoever is logged in: the official's name, else the key's label."""
    return who.label or who.role.value


def html_answer(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        text,
        status,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def json_answer(value: Any) -> Response:
    return Response(
        msgspec.json.encode(value),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _field(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


def secure(platform: Platform, request: Request) -> bool:
    """Whether cookies are marked Secure (https, or the setting says the proxy does TLS)."""
    return platform.settings.cookie_secure or request.url.scheme == "https"


def login_cookie(platform: Platform) -> str:
    return SECURE_LOGIN_COOKIE if platform.settings.cookie_secure else LOGIN_COOKIE


def login_form_answer(
    platform: Platform,
    request: Request,
    target: str,
    error: str = "",
    status: int = 200,
    login: str = "",
) -> HTMLResponse:
    """The login form with its login token, which the browser also keeps in a cookie: a form
    posted from elsewhere carries neither."""
    nonce = request.cookies.get(login_cookie(platform), "")
    if not _LOGIN_NONCE.fullmatch(nonce):
        nonce = secrets.token_urlsafe(32)
    sso = platform.settings.oidc_issuer is not None
    response = html_answer(
        pages.login_page(target, error=error, csrf=nonce, login=login, sso=sso), status
    )
    response.set_cookie(
        login_cookie(platform),
        nonce,
        max_age=LOGIN_FORM_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure(platform, request),
    )
    return response


async def start_session(
    platform: Platform, request: Request, who: Principal, response: Response
) -> None:
    """Open the official's (or key's) session, ending the browser's previous one, and give
    ``response`` its cookie."""
    now = platform.clock.now()
    async with platform.pool.connection() as conn:
        previous = platform.auth.session_of(request)
        if previous is not None:
            await end_session(conn, previous, now)
            platform.auth.forget_session(previous)
        session = await open_session(
            conn, who.key_id, now, platform.settings.session_ttl_s, user_id=who.user_id
        )
    response.set_cookie(
        platform.auth.cookie,
        session,
        max_age=int(platform.settings.session_ttl_s),
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure(platform, request),
    )


def add_login_routes(router: APIRouter, platform: Platform) -> None:
    """``/login`` (form and post), ``/logout`` and ``/session`` on the pages' router."""

    async def who_logs_in(request: Request, form: dict[str, list[str]]) -> Principal:
        login, key = _field(form, "login").strip(), _field(form, "key").strip()
        if login:
            return await platform.auth.verify_password(request, login, _field(form, "password"))
        if key:
            return await platform.auth.verify_key(request, key)
        raise Unauthenticated("nhập tên đăng nhập và mật khẩu (enter your login and password)")

    @router.get("/login", include_in_schema=False)
    async def login_form(
        request: Request,
        target: Annotated[str | None, Query(alias="next")] = None,
    ) -> HTMLResponse:
        return login_form_answer(platform, request, safe_next(target) or "")

    @router.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await read_body(request, _LOGIN_FORM_LIMIT)).decode("utf-8", "replace"))
        target = safe_next(_field(form, "next"))
        given_login = _field(form, "login").strip()[:64]
        try:
            check_same_origin(request, require=False)
            nonce = request.cookies.get(login_cookie(platform), "")
            sent = _field(form, "csrf_token")
            if not nonce or not hmac.compare_digest(nonce.encode(), sent.encode()):
                raise CrossSiteRefused(
                    "biểu mẫu đăng nhập đã hết hạn hoặc không đến từ trang này; hãy thử lại "
                    "(the login form expired or did not come from this site)"
                )
        except CrossSiteRefused as exc:
            return login_form_answer(platform, request, target or "", exc.message, 403, given_login)
        try:
            who = await who_logs_in(request, form)
            goal = target or landing(who)
        except RateLimited as exc:
            answer = login_form_answer(
                platform, request, target or "", exc.message, 429, given_login
            )
            answer.headers["Retry-After"] = str(exc.retry_after_s)
            return answer
        except (Unauthenticated, Forbidden) as exc:
            return login_form_answer(platform, request, target or "", exc.message, 401, given_login)
        response = RedirectResponse(goal, status_code=303)
        await start_session(platform, request, who, response)
        response.delete_cookie(
            login_cookie(platform),
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure(platform, request),
        )
        return response

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        try:
            # Browsers send Origin with every form post: one from elsewhere is refused.
            check_same_origin(request, require=True)
        except CrossSiteRefused as exc:
            return html_answer(pages.error_page(403, exc.message), 403)
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
            secure=secure(platform, request),
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
        return json_answer(
            {"csrf_token": csrf_token(session), "who": who_shown(who), "login": who.login}
        )
