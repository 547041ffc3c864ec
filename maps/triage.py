"""The operators' triage page: the unrouted and the catch-all queues on a map, and per ticket
the triage moves (recategorise, move the pin, merge, split, spam, not actionable), each previewed
before it is confirmed.

The page works through the API (``/v1/tickets`` with ``agency=none`` or ``agency=catch_all``,
``/v1/tickets/{id}/triage`` with ``dry_run``, the reports and history, and the live feed), so it
allows exactly what the operator's key may do. Operators and admins only.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass
from datetime import date
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from folium.plugins import MarkerCluster

from ioc.auth import Principal, Role
from ioc.errors import Forbidden, Unauthenticated
from ioc.platform import Platform
from ioc.routing.jurisdictions import LEGAL_ZONE
from ioc.tickets.states import OPEN_STATES, TRIAGE_MOVES
from maps import areas, page_map, pages
from maps.wall import data as wall_data
from maps.wall.data import Labels

TRIAGE_PATH: Final = "/triage"
TRIAGE_ROLES: Final = frozenset({Role.OPERATOR, Role.ADMIN})


@dataclass(frozen=True)
class TriagePage:
    tiles: str
    extent: tuple[tuple[float, float], tuple[float, float]]
    labels: Labels
    catch_all: str | None
    due_soon_fraction: float
    who: str
    server_time: int  # epoch ms: the page's clock is set from it


def _options(names: dict[str, str], blank: str) -> str:
    first = f'<option value="">{html.escape(blank)}</option>' if blank else ""
    return first + "".join(
        f'<option value="{html.escape(code)}">{html.escape(name)} ({html.escape(code)})</option>'
        for code, name in names.items()
    )


def _panels(page: TriagePage) -> str:
    catch_all = page.catch_all or ""
    catch_name = page.labels.agencies.get(catch_all, catch_all)
    catch_tab = (
        f'<button type="button" data-queue="catch_all">Hàng đợi chung '
        f"<small>({html.escape(catch_name)})</small></button>"
        if catch_all
        else ""
    )
    return f"""<header class="ioc-bar" id="bar">
  <h1>Phân loại phản ánh <small>(điều hành viên)</small></h1>
  <dl class="ioc-stats"><div><dt>Trong hàng đợi</dt><dd id="stat-count">–</dd></div></dl>
  <span id="live" class="ioc-live" data-state="connecting">Đang kết nối…</span>
  <nav class="ioc-nav">
    <span class="who">{html.escape(page.who)}</span>
    <a href="/wall">Bản đồ giám sát</a>
    <form method="post" action="/logout"><button type="submit">Đăng xuất</button></form>
  </nav>
</header>
<section class="triage-list" id="triage-list">
  <div class="tabs" id="tabs">
    <button type="button" data-queue="none" class="chosen">Chưa định tuyến</button>
    {catch_tab}
  </div>
  <form id="filters" class="filters">
    <label>Lĩnh vực <select name="category">{_options(page.labels.categories, "Tất cả")}</select></label>
    <label>Từ ngày <input type="date" name="since"></label>
    <button type="submit">Lọc</button>
  </form>
  <table id="queue">
    <thead><tr><th>Phiếu</th><th>Tiếp nhận</th><th>Lĩnh vực</th><th>Trạng thái</th>
      <th>Số phản ánh</th></tr></thead>
    <tbody></tbody>
  </table>
  <p id="queue-empty" class="empty" hidden>Không có phiếu nào trong hàng đợi này.</p>
</section>
<section class="detail" id="detail">
  <p class="empty">Chọn một phiếu để xem chi tiết và phân loại lại.</p>
</section>"""


def render_triage(page: TriagePage) -> str:
    # Where the map sits (beside the list) is the stylesheet's: triage.css.
    fmap = page_map.base_map(page.tiles, page.extent)
    cluster = MarkerCluster(  # type: ignore[no-untyped-call]
        name="Phiếu cần phân loại",
        options={"showCoverageOnHover": False, "maxClusterRadius": 40},
    ).add_to(fmap)
    config: dict[str, Any] = {
        "map": fmap.get_name(),
        "tickets": cluster.get_name(),
        "page": TRIAGE_PATH,
        "categories": page.labels.categories,
        "agencies": page.labels.agencies,
        "catchAll": page.catch_all,
        "openStates": sorted(OPEN_STATES),
        "moves": {name: sorted(states) for name, states in TRIAGE_MOVES.items()},
        "dueSoonFraction": page.due_soon_fraction,
        "serverTime": page.server_time,
    }
    return page_map.render(
        fmap,
        title="Phân loại phản ánh — Trung tâm IOC",
        css=["pages.css", "console.css", "triage.css"],
        scripts=["common.js", "triage.js"],
        body=_panels(page),
        entry="IocTriage.start",
        config=config,
    ).replace("<body>", '<body class="ioc-console ioc-triage">', 1)


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        text, status, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    )


def build_triage_router(platform: Platform) -> APIRouter:
    router = APIRouter()

    @router.get(TRIAGE_PATH, include_in_schema=False)
    async def triage_page(request: Request) -> Response:
        try:
            who: Principal = await platform.authenticate(request)
        except Unauthenticated:
            return RedirectResponse(f"/login?next={quote(TRIAGE_PATH)}", status_code=303)
        try:
            who.require(TRIAGE_ROLES)
        except Forbidden as exc:
            return _html(pages.error_page(403, exc.message), 403)
        async with platform.pool.connection() as conn:
            labels = await wall_data.labels(conn)
        desk = platform.desk
        today: date = platform.clock.now().astimezone(LEGAL_ZONE).date()
        boundaries = areas.finest_in_force(desk.router.sets, today) if desk is not None else None
        page = TriagePage(
            tiles=platform.settings.map_tiles,
            extent=areas.bounds(boundaries),
            labels=labels,
            catch_all=platform.settings.fallback_agency or None,
            due_soon_fraction=platform.settings.sla_due_soon_fraction,
            who=who.label or who.role.value,
            server_time=wall_data.millis(platform.clock.now()) or 0,
        )
        return _html(await asyncio.to_thread(render_triage, page))

    return router
