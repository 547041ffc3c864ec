"""The pages' scripts, stylesheets and icons, served by the platform itself.

A control room's network is often closed, so no page may load anything from the internet.
The browser libraries come from PyPI packages installed with the platform (the XStatic
packages, which ship the upstream files unchanged; the heat-map plug-in is the copy folium
itself ships in its package); our own small scripts and stylesheets live
in ``maps/static``. folium's elements name CDN addresses for what they need; ``localize``
rewrites every one of them to a ``/static/...`` address here, drops the few our pages never
use, and refuses anything it does not know, so a new folium element cannot quietly bring a CDN
back.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from ioc.errors import ConfigError

STATIC_ROOT: Final = "/static"
OWN_BUNDLE: Final = "ioc"
OWN_DIR: Final = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Bundle:
    """One vendor package's files: where the package keeps them, and its version."""

    name: str
    module: str  # the Python package that ships the files (in its ``folder``)
    distribution: str  # its name on PyPI, for the error message when it is missing
    folder: str = "data"

    @property
    def directory(self) -> Path:
        return _data_dir(self.module, self.distribution) / self.folder

    def url(self, path: str) -> str:
        return f"{STATIC_ROOT}/vendor/{self.name}/{path}"


BUNDLES: Final = {
    b.name: b
    for b in (
        Bundle("leaflet", "xstatic.pkg.leaflet", "XStatic-Leaflet"),
        Bundle(
            "markercluster", "xstatic.pkg.leaflet_markercluster", "XStatic-Leaflet-MarkerCluster"
        ),
        Bundle("jquery", "xstatic.pkg.jquery", "XStatic-jQuery"),
        Bundle("fontawesome", "xstatic.pkg.font_awesome", "XStatic-Font-Awesome"),
        Bundle("folium", "folium", "folium", folder="templates"),
    )
}

# folium's resource names → the local file that replaces the CDN address.
LOCAL: Final[dict[str, str]] = {
    "leaflet": BUNDLES["leaflet"].url("leaflet.js"),
    "leaflet_css": BUNDLES["leaflet"].url("leaflet.css"),
    "jquery": BUNDLES["jquery"].url("jquery.min.js"),
    "awesome_markers_font_css": BUNDLES["fontawesome"].url("css/all.min.css"),
    "markerclusterjs": BUNDLES["markercluster"].url("leaflet.markercluster.js"),
    "markerclustercss": BUNDLES["markercluster"].url("MarkerCluster.css"),
    "markerclusterdefaultcss": BUNDLES["markercluster"].url("MarkerCluster.Default.css"),
    "leaflet-heat.js": BUNDLES["folium"].url("leaflet_heat.min.js"),
}

# Resources folium's map loads by default that our pages never use: Bootstrap (its styles and
# widgets; the panels are our own CSS), the glyphicons font and the awesome-markers plug-in
# (markers are drawn as circles by our scripts, icons come from Font Awesome).
UNUSED: Final = frozenset(
    {
        "bootstrap",
        "bootstrap_css",
        "glyphicons_css",
        "awesome_markers",
        "awesome_markers_css",
        "awesome_rotate_css",
    }
)


def _data_dir(module: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the page assets package {distribution} is not installed; "
            f"install the platform again (pip install -e .) or `pip install {distribution}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def bundle_dir(name: str) -> Path | None:
    """The folder whose files are served under /static/vendor/<name>/, or None."""
    bundle = BUNDLES.get(name)
    return None if bundle is None else bundle.directory


def own(path: str) -> str:
    """The address of one of our own static files."""
    return f"{STATIC_ROOT}/{OWN_BUNDLE}/{path}"


def check_installed() -> None:
    """Raise ConfigError naming any vendor file the pages need that is missing."""
    for address in LOCAL.values():
        name, _, path = address.removeprefix(f"{STATIC_ROOT}/vendor/").partition("/")
        directory = bundle_dir(name)
        if directory is None or not (directory / path).is_file():
            raise ConfigError(
                f"the page asset {address} is missing from {BUNDLES[name].distribution}; "
                "reinstall the platform"
            )


def _elements(root: Any) -> Iterator[Any]:
    yield root
    for child in getattr(root, "_children", {}).values():
        yield from _elements(child)


def _local_list(element: Any, entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    kept = []
    for name, address in entries:
        if address.startswith("/") and not address.startswith("//"):
            kept.append((name, address))
        elif name in LOCAL:
            kept.append((name, LOCAL[name]))
        elif name not in UNUSED:
            raise ConfigError(
                f"{type(element).__name__} would load {name!r} from {address}; the pages may "
                "only load files the platform serves: add it to maps/assets.py"
            )
    return kept


def localize(root: Any) -> None:
    """Point every script and stylesheet of a folium map (and its children) at /static/...."""
    for element in _elements(root):
        for attribute in ("default_js", "default_css"):
            entries = getattr(element, attribute, None)
            if entries:
                # An instance attribute: folium's class lists stay as they are.
                setattr(element, attribute, _local_list(element, list(entries)))
