"""The operators' wall map: the province's jurisdictions, tickets, sensors and active alerts.

folium lays out the map and its layers (jurisdictions as a GeoJSON layer, empty marker
clusters for tickets and for dossiers, an empty group for sensors, a layer control); ``wall.js``
(and ``wall_dossiers.js`` for the dossiers) fills them from the snapshot and keeps them current
from the live feed. Kiosk mode is the same page for the
video wall: full screen, no controls, large type, rotating through the views of its playlist
(``wall_playlist.js``) without reloading.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Final

import folium
from folium.plugins import HeatMap, MarkerCluster

from ioc.routing.jurisdictions import BoundarySet
from maps import areas, page_map
from maps.wall.data import TICKET_COLUMNS, Labels
from maps.wall.dossiers import PLACE_COLUMNS

WALL_PATH: Final = "/wall"
SNAPSHOT_PATH: Final = "/v1/wall/snapshot"
CHANGES_PATH: Final = "/v1/wall/changes"
FEED_PATH: Final = "/v1/wall/ws"

_CLUSTER_OPTIONS: Final = {
    "chunkedLoading": True,
    "showCoverageOnHover": False,
    "maxClusterRadius": 50,
    "spiderfyOnMaxZoom": True,
}


@dataclass(frozen=True)
class WallPage:
    """What the wall page is built from."""

    tiles: str
    boundaries: BoundarySet | None
    labels: Labels
    kiosk: bool
    due_soon_fraction: float
    who: str
    # The video wall's rotation, (view, seconds), and its city centre as "lon,lat,zoom" (or "").
    playlist: tuple[tuple[str, float], ...] = ()
    centre: str = ""
    # Whether the viewer may triage (the nav then links to the triage page).
    triage: bool = False
    photos: bool = False  # IOC_MEDIA_ON_WALL: ticket popups show the ticket's photos


def _areas_layer(boundaries: BoundarySet | None) -> folium.GeoJson | None:
    if boundaries is None or len(boundaries) == 0:
        return None
    return folium.GeoJson(
        areas.geojson(boundaries),
        name=f"{_LEVEL_NAMES.get(boundaries.level, boundaries.level)} (phiếu mở, quá hạn)",
        style_function=lambda _: {"color": "#33415c", "weight": 1, "fillOpacity": 0.15},
        highlight_function=None,
        zoom_on_click=False,
    )


_LEVEL_NAMES: Final = {"ward": "Phường, xã", "district": "Quận, huyện", "province": "Tỉnh, thành"}


_BOARDS: Final = """<aside class="ioc-boards" id="boards">
  <section class="ioc-board" id="dossier-board">
    <h2>Hồ sơ thủ tục hành chính hôm nay</h2>
    <dl class="ioc-figures">
      <div><dt>Tiếp nhận hôm nay</dt><dd id="dossier-received">–</dd></div>
      <div><dt>Đang xử lý</dt><dd id="dossier-processing">–</dd></div>
      <div class="due-soon"><dt>Sắp đến hạn</dt><dd id="dossier-due-soon">–</dd></div>
      <div class="overdue"><dt>Quá hạn</dt><dd id="dossier-overdue">–</dd></div>
      <div><dt>Trả kết quả hôm nay</dt><dd id="dossier-returned">–</dd></div>
      <div><dt>Đúng hạn hôm nay</dt><dd id="dossier-on-time-today">–</dd></div>
      <div><dt>Đúng hạn tháng này</dt><dd id="dossier-on-time-month">–</dd></div>
    </dl>
    <h3>Kênh tiếp nhận hôm nay</h3>
    <ul class="ioc-bars" id="dossier-channels"><li class="empty">Chưa có hồ sơ</li></ul>
    <h3>Cơ quan có nhiều hồ sơ quá hạn nhất</h3>
    <ol class="ioc-ranking" id="dossier-agencies"><li class="empty">Không có hồ sơ quá hạn</li></ol>
  </section>
  <section class="ioc-board" id="traffic-board">
    <h2>Giao thông</h2>
    <h3>Ùn tắc nhiều nhất (<span id="traffic-congested-total">0</span> điểm)</h3>
    <ol class="ioc-ranking" id="traffic-congested"><li class="empty">Không có điểm ùn tắc</li></ol>
    <h3>Cảm biến mất tín hiệu (<span id="traffic-silent-total">0</span>)</h3>
    <ol class="ioc-ranking" id="traffic-silent"><li class="empty">Mọi cảm biến đều có số liệu</li></ol>
    <h3>Lưu lượng toàn tỉnh hôm nay (xe/giờ)</h3>
    <svg id="traffic-chart" class="ioc-chart" viewBox="0 0 320 130" role="img"
      aria-label="Lưu lượng xe toàn tỉnh theo giờ hôm nay so với cùng thứ các tuần trước"></svg>
    <p class="ioc-chart-key"><span class="today"></span>Hôm nay
      <span class="baseline"></span>Cùng thứ các tuần trước (trung bình)</p>
  </section>
</aside>"""


TRIAGE_LINK: Final = (
    '<a href="/triage" id="triage-link" title="Phiếu chưa phân đơn vị và phiếu của IOC">'
    "Phân loại phiếu</a>"
)


def _panels(page: WallPage) -> str:
    controls = (
        ""
        if page.kiosk
        else f"""<nav class="ioc-nav">
      <span class="who">{html.escape(page.who)}</span>
      {TRIAGE_LINK if page.triage else ""}
      <a href="{WALL_PATH}?kiosk=1" title="Toàn màn hình, không nút bấm, chữ lớn">Màn hình lớn</a>
      <form method="post" action="/logout"><button type="submit">Đăng xuất</button></form>
    </nav>"""
    )
    return f"""<header class="ioc-bar" id="bar">
  <h1>Trung tâm IOC · Bản đồ giám sát</h1>
  <dl class="ioc-stats">
    <div><dt>Phiếu đang mở</dt><dd id="stat-open">–</dd></div>
    <div class="due-soon"><dt>Sắp đến hạn</dt><dd id="stat-due-soon">–</dd></div>
    <div class="overdue"><dt>Quá hạn</dt><dd id="stat-overdue">–</dd></div>
    <div class="alerting"><dt>Cảnh báo</dt><dd id="stat-alerts">–</dd></div>
  </dl>
  <span id="live" class="ioc-live" data-state="connecting">Đang kết nối…</span>
  <time id="clock" class="ioc-clock"></time>
  {controls}
</header>
<aside class="ioc-alerts" id="alerts-panel">
  <h2>Cảnh báo đang hoạt động</h2>
  <ol id="alerts"><li class="empty">Không có cảnh báo</li></ol>
  <h2>Phiếu mới nhất</h2>
  <ol id="recent"></ol>
</aside>
{_BOARDS}
<div class="ioc-legend" id="legend">
  <div><span class="dot on-track"></span>Trong hạn</div>
  <div><span class="dot due-soon"></span>Sắp đến hạn</div>
  <div><span class="dot overdue"></span>Quá hạn</div>
  <div class="dossier-key"><span class="diamond on-track"></span>Hồ sơ trong hạn</div>
  <div class="dossier-key"><span class="diamond due-soon"></span>Hồ sơ sắp đến hạn</div>
  <div class="dossier-key"><span class="diamond overdue"></span>Hồ sơ quá hạn</div>
  <div><span class="sq free"></span>Thông thoáng</div>
  <div><span class="sq slow"></span>Chậm</div>
  <div><span class="sq jam"></span>Ùn tắc</div>
  <div><span class="sq silent"></span>Không có số liệu</div>
</div>"""


def render_wall(page: WallPage) -> str:
    """The wall page's HTML (no ticket data: the page loads the snapshot itself)."""
    fmap = page_map.base_map(page.tiles, areas.bounds(page.boundaries), controls=not page.kiosk)
    area_layer = _areas_layer(page.boundaries)
    if area_layer is not None:
        area_layer.add_to(fmap)
    cluster = MarkerCluster(  # type: ignore[no-untyped-call]
        name="Phiếu phản ánh (theo hạn xử lý)",
        icon_create_function="IocWall.clusterIcon",
        options=_CLUSTER_OPTIONS,
    ).add_to(fmap)
    dossier_cluster = MarkerCluster(  # type: ignore[no-untyped-call]
        name="Hồ sơ TTHC (theo hạn giải quyết)",
        icon_create_function="IocWallDossiers.clusterIcon",
        options=_CLUSTER_OPTIONS,
    ).add_to(fmap)
    sensor_layer = folium.FeatureGroup(name="Cảm biến giao thông (mức ùn tắc)").add_to(fmap)
    # Filled from the snapshot (field reports of the last 7 days) by wall_heat.js.
    heat = HeatMap(  # type: ignore[no-untyped-call]
        [], name="Mật độ phản ánh 7 ngày qua", radius=22, blur=18, min_opacity=0.3
    )
    heat.add_to(fmap)
    if not page.kiosk:
        folium.LayerControl(collapsed=False, position="topleft").add_to(fmap)
    config: dict[str, Any] = {
        "map": fmap.get_name(),
        "tickets": cluster.get_name(),
        "sensors": sensor_layer.get_name(),
        "dossiers": dossier_cluster.get_name(),
        "heat": heat.get_name(),
        "areas": area_layer.get_name() if area_layer is not None else None,
        "kiosk": page.kiosk,
        "snapshot": SNAPSHOT_PATH,
        "changes": CHANGES_PATH,
        "feed": FEED_PATH,
        "ticketColumns": list(TICKET_COLUMNS),
        "placeColumns": list(PLACE_COLUMNS),
        "page": WALL_PATH + ("?kiosk=1" if page.kiosk else ""),
        "categories": page.labels.categories,
        "agencies": page.labels.agencies,
        "dueSoonFraction": page.due_soon_fraction,
        "playlist": [list(step) for step in page.playlist] if page.kiosk else [],
        "centre": [float(v) for v in page.centre.split(",")] if page.centre.strip() else None,
        "photos": page.photos and not page.kiosk,
    }
    return page_map.render(
        fmap,
        title="Bản đồ giám sát — Trung tâm IOC",
        css=["pages.css", "wall.css"],
        scripts=[
            "common.js",
            "wall_panels.js",
            "wall_traffic.js",
            "wall_heat.js",
            "wall_playlist.js",
            "wall_dossiers.js",
            "wall.js",
        ],
        body=_panels(page),
        entry="IocWall.start",
        config=config,
    ).replace("<body>", f'<body class="ioc-wall{" kiosk" if page.kiosk else ""}">', 1)
