"""The folium map both pages start from: the tile setting, the province's extent, local assets.

The pages' data is drawn by our scripts in the browser; folium lays out the map, its layers
and the layer control, and this module hands our script the JavaScript names of those layers.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import folium
from branca.element import Element, MacroElement
from folium.template import Template

from ioc.errors import ConfigError
from maps import assets

OSM_ATTRIBUTION: Final = (
    '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
)
_PLACEHOLDERS = ("{z}", "{x}", "{y}")
# Loads that leave the page: <script src=…> and <link href=…>.
_LOADS = re.compile(r"""<(?:script[^>]*\ssrc|link[^>]*\shref)\s*=\s*["']([^"']+)["']""", re.I)


def tile_layer(setting: str) -> folium.TileLayer | None:
    """The background layer IOC_MAP_TILES asks for: osm, none, or a URL template."""
    value = setting.strip()
    if value.lower() == "none":
        return None
    if value.lower() == "osm":
        return folium.TileLayer(
            "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            attr=OSM_ATTRIBUTION,
            name="OpenStreetMap",
            max_zoom=19,
            control=False,
        )
    if not value.lower().startswith(("http://", "https://", "/")) or not all(
        p in value for p in _PLACEHOLDERS
    ):
        raise ConfigError(
            f"IOC_MAP_TILES={setting!r}: expected osm, none, or a tile URL template with "
            "{z}, {x} and {y}, e.g. http://tiles.internal/{z}/{x}/{y}.png"
        )
    return folium.TileLayer(
        value, attr="Bản đồ nền nội bộ", name="Bản đồ nền", max_zoom=20, control=False
    )


def base_map(
    tiles: str,
    extent: tuple[tuple[float, float], tuple[float, float]],
    *,
    controls: bool = True,
) -> folium.Map:
    """An empty map fitted to ``extent`` ((south, west), (north, east))."""
    (south, west), (north, east) = extent
    fmap = folium.Map(
        location=[(south + north) / 2, (west + east) / 2],
        tiles=None,
        zoom_start=12,
        zoom_control=controls,
        control_scale=controls,
        prefer_canvas=True,
        # The marker cluster needs the map's own maxZoom (folium's max_zoom goes to the tiles).
        maxZoom=19,
    )
    layer = tile_layer(tiles)
    if layer is not None:
        layer.add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]])
    return fmap


class _Starter(MacroElement):
    """Calls our page script once folium has made the map and its layers."""

    _template = Template(
        """{% macro script(this, kwargs) %}
        {{ this.entry }}({{ this.config }});
        {% endmacro %}"""
    )

    def __init__(self, entry: str, config: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "IocStart"
        self.entry = entry
        self.config = config


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(
    fmap: folium.Map,
    *,
    title: str,
    css: list[str],
    scripts: list[str],
    body: str,
    entry: str,
    config: dict[str, Any],
) -> str:
    """The page's HTML: folium's, with only local assets, our files, panels and start call."""
    root: Any = fmap.get_root()
    root.header.add_child(Element(f"<title>{title}</title>"), name="title")
    root.header.add_child(
        Element(f'<link rel="icon" href="{assets.own("favicon.svg")}">'), name="icon"
    )
    for path in css:
        root.header.add_child(folium.CssLink(assets.own(path)), name=f"css-{path}")
    for path in scripts:
        root.header.add_child(folium.JavascriptLink(assets.own(path)), name=f"js-{path}")
    root.html.add_child(Element(body), name="panels")
    _Starter(entry, script_json(config)).add_to(fmap)
    assets.localize(root)
    page = str(root.render())
    check_local(page)
    return page.replace("<html>", '<html lang="vi">', 1)


def check_local(page: str) -> None:
    """Raise if the page would load a script or stylesheet from anywhere but this server."""
    for address in _LOADS.findall(page):
        if not address.startswith("/") or address.startswith("//"):
            raise ConfigError(
                f"the page would load {address}; only files the platform serves are allowed"
            )
