"""The pages' single sign-on through the province's OpenID provider (when ``IOC_OIDC_ISSUER``
is set): ``/login/oidc`` begins the authorization code flow and sends the browser to the
provider; ``/login/oidc/callback`` takes the code back, checks the state (against the begun
login, kept server-side and in a short-lived cookie), has the ID token verified, finds or links
the official's account and opens the same session the password login opens. Anything that does
not hold together answers the login page with the reason; ``/logout`` ends the session as for
any login (the province's own session is the provider's business).
"""

from __future__ import annotations

import hmac
import html
import logging
import secrets
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from ioc.errors import IocError
from ioc.platform import Platform
from ioc.sso.client import OpenIdClient, PendingLogin, SsoUnavailable
from ioc.sso.mapping import CALLBACK_PATH, SsoConfig, SsoFailed, SsoRefused
from ioc.store.identities import PENDING_MAX_AGE, official_for, save_pending, take_pending
from maps.login import html_answer, landing, login_form_answer, safe_next, secure, start_session

log = logging.getLogger(__name__)

BEGIN_PATH: Final = "/login/oidc"
PENDING_COOKIE: Final = "ioc_sso"
SECURE_PENDING_COOKIE: Final = "__Secure-ioc_sso"
_STATUS: Final = {SsoRefused: 403, SsoFailed: 400, SsoUnavailable: 502}


def _moving_on(goal: str) -> str:
    """A page that sends the browser on to ``goal`` from our own origin: the session cookie is
    SameSite=Strict, so a redirect that continues the provider's (cross-site) chain of
    redirects would arrive without it."""
    target = html.escape(goal)
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="0;url={target}">
<title>Đã đăng nhập — Trung tâm IOC</title></head>
<body><p>Đã đăng nhập. <a href="{target}">Tiếp tục</a></p></body></html>"""


def add_sso_routes(router: APIRouter, platform: Platform) -> None:
    """The single sign-on routes, when it is configured (a bad setting fails at start)."""
    config = SsoConfig.of(platform.settings)
    if config is None:
        return
    provider = OpenIdClient(config)
    cookie = SECURE_PENDING_COOKIE if platform.settings.cookie_secure else PENDING_COOKIE

    def refused(request: Request, target: str, exc: IocError) -> HTMLResponse:
        status = next((s for kind, s in _STATUS.items() if isinstance(exc, kind)), 400)
        answer = login_form_answer(platform, request, target, exc.message, status)
        answer.delete_cookie(cookie, path=BEGIN_PATH, httponly=True, samesite="lax")
        return answer

    @router.get(BEGIN_PATH, include_in_schema=False)
    async def begin(
        request: Request, target: Annotated[str | None, Query(alias="next")] = None
    ) -> Response:
        redirect_uri = config.redirect_url or str(request.base_url).rstrip("/") + CALLBACK_PATH
        pending = PendingLogin.new(redirect_uri, safe_next(target))
        try:
            async with provider.http() as http:
                url = await provider.authorization_url(http, pending)
        except (SsoUnavailable, SsoFailed) as exc:
            log.warning("single sign-on could not begin: %s", exc.message)
            return refused(request, pending.next_path or "", exc)
        pending_id = secrets.token_urlsafe(32)
        async with platform.pool.connection() as conn:
            await save_pending(conn, pending_id, pending, platform.clock.now())
        answer = Response(status_code=303, headers={"Location": url, "Cache-Control": "no-store"})
        # Lax, not Strict: the browser comes back from the provider's site with a top-level GET.
        answer.set_cookie(
            cookie,
            pending_id,
            max_age=int(PENDING_MAX_AGE.total_seconds()),
            path=BEGIN_PATH,
            httponly=True,
            samesite="lax",
            secure=secure(platform, request),
        )
        return answer

    @router.get(CALLBACK_PATH, include_in_schema=False)
    async def callback(request: Request) -> Response:
        query = request.query_params
        pending_id = request.cookies.get(cookie, "")
        now = platform.clock.now()
        async with platform.pool.connection() as conn:
            pending = await take_pending(conn, pending_id, now) if pending_id else None
        if pending is None:
            return refused(
                request,
                "",
                SsoFailed(
                    "lượt đăng nhập bằng tài khoản tỉnh đã hết hạn hoặc không bắt đầu từ trình "
                    "duyệt này; hãy thử lại (no login was begun here, or it expired)"
                ),
            )
        target = pending.next_path or ""
        try:
            sent_state = query.get("state", "")
            if not hmac.compare_digest(sent_state.encode(), pending.state.encode()):
                log.warning("single sign-on: a callback's state does not match its login")
                raise SsoFailed(
                    "lượt đăng nhập không khớp (the state does not match the login begun here); "
                    "hãy thử lại"
                )
            issuer = query.get("iss")  # RFC 9207, when the provider sends it
            if issuer is not None and issuer.rstrip("/") != config.issuer:
                raise SsoFailed(f"the answer names another provider ({issuer!r})")
            if "error" in query:
                described = query.get("error_description") or query["error"]
                raise SsoRefused(
                    f"máy chủ đăng nhập của tỉnh không cho đăng nhập (the provider said: "
                    f"{described})"
                )
            async with provider.http() as http:
                person = await provider.person(http, pending, query.get("code", ""), now)
            async with platform.pool.connection() as conn:
                who = await official_for(conn, person, now)
        except SsoRefused as exc:
            log.warning("single sign-on refused: %s", exc.message)
            return refused(request, target, exc)
        except (SsoFailed, SsoUnavailable) as exc:
            return refused(request, target, exc)
        goal = target or landing(who)
        answer = html_answer(_moving_on(goal))
        await start_session(platform, request, who, answer)
        answer.delete_cookie(
            cookie, path=BEGIN_PATH, httponly=True, samesite="lax", secure=secure(platform, request)
        )
        return answer
