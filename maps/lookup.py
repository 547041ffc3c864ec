"""``/lookup``: the citizens' lookup page (tra cứu), in Vietnamese, with no login.

A plain form that works without scripts: the code goes in the query string, the page answers
with the report's or dossier's state, deadline and history, drawn by the server from the same
data as ``GET /v1/public/lookup`` and spending the same per-address allowance.
"""

from __future__ import annotations

import html
from datetime import datetime, tzinfo
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ioc import lookup
from ioc.api.lookup import public_status
from ioc.api.throttle import FailureLimiter
from ioc.errors import NotFound, RateLimited
from ioc.platform import Platform
from maps import assets
from maps.login import html_answer

_KINDS = {"field_report": "Phản ánh hiện trường", "dossier": "Hồ sơ thủ tục hành chính"}


def _when(at: datetime | None, zone: tzinfo) -> str:
    return "—" if at is None else at.astimezone(zone).strftime("%H:%M ngày %d/%m/%Y")


def _form(code: str) -> str:
    return f"""<form method="get" action="/lookup" id="lookup-form">
    <label for="code">Mã phản ánh hoặc mã hồ sơ</label>
    <input id="code" name="code" value="{html.escape(code)}" maxlength="{lookup.MAX_CODE}"
           placeholder="PA-12345-AB12CD34 hoặc mã trên giấy hẹn" required autofocus>
    <button type="submit">Tra cứu</button>
  </form>"""


def _status(found: lookup.Status, zone: tzinfo) -> str:
    e = html.escape
    result = lookup.RESULTS.get(found.result or "")
    rows = "".join(
        f"<tr><td>{_when(s.at, zone)}</td><td>{e(s.label)}"
        + (f" — {e(s.agency)}" if s.agency else "")
        + (f": {_when(s.until, zone)}" if s.until else "")
        + "</td></tr>"
        for s in found.history
    )
    facts = [
        ("Loại", _KINDS[found.kind]),
        ("Nội dung", found.subject),
        ("Trạng thái", found.state_label),
        ("Cơ quan xử lý", found.agency or "Trung tâm IOC đang phân loại"),
        (
            "Thời điểm phản ánh" if found.kind == "field_report" else "Ngày đăng ký",
            _when(found.opened_at, zone),
        ),
        ("Hạn xử lý", _when(found.deadline_at, zone)),
    ]
    if found.finished_at is not None:
        facts.append(("Ngày hoàn thành", _when(found.finished_at, zone)))
    if result:
        facts.append(("Kết quả so với hạn", result))
    listed = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
    return f"""<section id="status" data-state="{e(found.state)}" data-kind="{e(found.kind)}">
    <h2>{e(found.code)}</h2>
    <dl class="ioc-facts">{listed}</dl>
    <h3>Quá trình xử lý</h3>
    <table class="ioc-history"><thead><tr><th>Thời gian</th><th>Diễn biến</th></tr></thead>
    <tbody>{rows}</tbody></table>
    <p class="empty">Giờ Việt Nam ({e(str(zone))}). Không hiển thị thông tin cá nhân.</p>
  </section>"""


def lookup_page(code: str, body: str, zone: tzinfo) -> str:
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tra cứu phản ánh, hồ sơ — Trung tâm IOC</title>
<link rel="icon" href="{assets.own("favicon.svg")}">
<link rel="stylesheet" href="{assets.own("pages.css")}">
</head>
<body class="ioc-plain ioc-lookup">
<main class="ioc-card">
  <h1>Tra cứu phản ánh, hồ sơ</h1>
  <p>Nhập mã phản ánh (nhận được khi gửi phản ánh) hoặc mã hồ sơ thủ tục hành chính (trên
  giấy tiếp nhận và hẹn trả kết quả) để xem tình trạng, hạn xử lý và quá trình xử lý.</p>
  {_form(code)}
  {body}
</main>
</body></html>"""


def build_lookup_page_router(platform: Platform, limiter: FailureLimiter) -> APIRouter:
    router = APIRouter()
    zone = platform.settings.zone

    @router.get("/lookup", include_in_schema=False)
    async def lookup_view(
        request: Request, code: Annotated[str, Query(max_length=lookup.MAX_CODE)] = ""
    ) -> HTMLResponse:
        if not code.strip():
            return html_answer(lookup_page("", "", zone))
        try:
            found = await public_status(platform, limiter, request, code)
        except NotFound:
            body = (
                f'<p class="error" role="alert" id="not-found">{html.escape(lookup.NOT_FOUND)}.</p>'
            )
            return html_answer(lookup_page(code, body, zone), 404)
        except RateLimited as exc:
            body = (
                '<p class="error" role="alert" id="too-many">Bạn đã tra cứu quá nhiều lần; '
                f"vui lòng thử lại sau {exc.retry_after_s} giây.</p>"
            )
            answer = html_answer(lookup_page(code, body, zone), 429)
            answer.headers["Retry-After"] = str(exc.retry_after_s)
            return answer
        return html_answer(lookup_page(code, _status(found, zone), zone))

    return router
