"""An agency's console: its queue by deadline (overdue first; an official's own tickets before
the others), a map of its tickets, each ticket's history, and the actions it may take.

The page works through the ticket API (``/v1/tickets``: the queue, one ticket, its history,
actions, and the live feed), so it shows and allows exactly what the agency's key may do.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from folium.plugins import MarkerCluster

from ioc.auth import Principal, Role
from ioc.errors import Forbidden
from ioc.tickets.states import MOVES, OPEN_STATES, STATES
from maps import page_map
from maps.wall.data import Labels

CONSOLE_PREFIX: Final = "/agencies"
# The actions the console offers, in the order of its buttons.
CONSOLE_ACTIONS: Final = ("assign", "start", "wait", "resume", "resolve", "transfer")


def console_path(code: str) -> str:
    return f"{CONSOLE_PREFIX}/{quote(code, safe='')}"


def check_access(who: Principal, code: str) -> None:
    """Operators and admins open any console; an agency key only its own."""
    if who.role in (Role.OPERATOR, Role.ADMIN):
        return
    if who.role is Role.AGENCY:
        if who.agency == code:
            return
        raise Forbidden(
            f"khóa của đơn vị {who.agency!r} chỉ mở được bàn làm việc của chính đơn vị đó, "
            f"không phải của {code!r}"
        )
    raise Forbidden(
        f"a {who.role.value!r} key cannot open an agency console; needs an operator, admin "
        "or that agency's key"
    )


@dataclass(frozen=True)
class ConsolePage:
    code: str
    tiles: str
    extent: tuple[tuple[float, float], tuple[float, float]]
    labels: Labels
    due_soon_fraction: float
    who: str
    sees_wall: bool
    server_time: int  # epoch ms: the page's clock is set from it
    me: str | None = None  # the official's login: their tickets come first
    officials: tuple[tuple[str, str], ...] = ()  # (login, name): whom tickets may be assigned


def _panels(page: ConsolePage) -> str:
    name = page.labels.agencies.get(page.code, page.code)
    wall_link = '<a href="/wall">Bản đồ giám sát</a>' if page.sees_wall else ""
    return f"""<header class="ioc-bar console-bar" id="bar">
  <h1>{html.escape(name)} <small>({html.escape(page.code)})</small></h1>
  <dl class="ioc-stats">
    <div><dt>Đang mở</dt><dd id="stat-open">–</dd></div>
    <div class="due-soon"><dt>Sắp đến hạn</dt><dd id="stat-due-soon">–</dd></div>
    <div class="overdue"><dt>Quá hạn</dt><dd id="stat-overdue">–</dd></div>
  </dl>
  <span id="live" class="ioc-live" data-state="connecting">Đang kết nối…</span>
  <nav class="ioc-nav">
    <span class="who">{html.escape(page.who)}</span>
    {wall_link}
    <form method="post" action="/logout"><button type="submit">Đăng xuất</button></form>
  </nav>
</header>
<section class="queue" id="queue-panel">
  <table id="queue">
    <thead><tr><th>Hạn xử lý</th><th>Phiếu</th><th>Lĩnh vực</th><th>Trạng thái</th>
      <th>Người xử lý</th><th>Số phản ánh</th></tr></thead>
    <tbody></tbody>
  </table>
  <p id="queue-empty" class="empty" hidden>Không có phiếu nào đang mở.</p>
</section>
<section class="detail" id="detail">
  <p class="empty">Chọn một phiếu trong danh sách để xem chi tiết và xử lý.</p>
</section>"""


def render_console(page: ConsolePage) -> str:
    # Where the map sits (beside the queue) is the stylesheet's: console.css.
    fmap = page_map.base_map(page.tiles, page.extent)
    cluster = MarkerCluster(  # type: ignore[no-untyped-call]
        name="Phiếu của đơn vị",
        icon_create_function="IocConsole.clusterIcon",
        options={"showCoverageOnHover": False, "maxClusterRadius": 40},
    ).add_to(fmap)
    config: dict[str, Any] = {
        "map": fmap.get_name(),
        "tickets": cluster.get_name(),
        "agency": page.code,
        "page": console_path(page.code),
        "categories": page.labels.categories,
        "agencies": page.labels.agencies,
        "states": list(STATES),
        "openStates": sorted(OPEN_STATES),
        "moves": {name: sorted(MOVES[name].sources) for name in CONSOLE_ACTIONS},
        "dueSoonFraction": page.due_soon_fraction,
        "serverTime": page.server_time,
        "me": page.me,
        "officials": [list(o) for o in page.officials],
    }
    return page_map.render(
        fmap,
        title=f"{page.labels.agencies.get(page.code, page.code)} — bàn làm việc",
        css=["pages.css", "console.css"],
        scripts=["common.js", "console.js"],
        body=_panels(page),
        entry="IocConsole.start",
        config=config,
    ).replace("<body>", '<body class="ioc-console">', 1)
