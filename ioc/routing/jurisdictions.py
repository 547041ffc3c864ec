"""Jurisdiction boundaries: versioned sets read from vector files, checked and repaired.

A boundary set is every jurisdiction of one level (province, district or ward) as it stands from
one date. Sets of the same level with different dates coexist: reports are routed by the set in
force on the day they happened (Vietnam dropped the district level on 1 July 2025, but older
reports still name districts).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from ioc.errors import InvalidInput
from ioc.routing.index import JurisdictionIndex

LEVELS = ("province", "district", "ward")

#: Boundary changes take effect on Vietnamese calendar days, whatever zone the platform shows.
LEGAL_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")

_POLYGON = 3
_MULTIPOLYGON = 6
_FORMATS = "GeoJSON, GeoPackage (choose a layer with --layer), Shapefile or any other vector format GDAL reads"


@dataclass(frozen=True)
class BoundarySet:
    """Every jurisdiction of one level, in force from ``effective_from`` (EPSG:4326, valid)."""

    level: str
    effective_from: date
    codes: tuple[str, ...]
    names: tuple[str, ...]
    parent_codes: tuple[str | None, ...]
    geometries: tuple[BaseGeometry, ...]
    _index: JurisdictionIndex | None = field(default=None, init=False, repr=False, compare=False)
    _index_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise InvalidInput(f'level is "{self.level}", must be one of {", ".join(LEVELS)}')
        sizes = {len(self.codes), len(self.names), len(self.parent_codes), len(self.geometries)}
        if len(sizes) != 1:
            raise InvalidInput(
                "codes, names, parent_codes and geometries must have one entry per jurisdiction; "
                f"got {len(self.codes)}, {len(self.names)}, {len(self.parent_codes)} "
                f"and {len(self.geometries)}"
            )

    def __len__(self) -> int:
        return len(self.codes)

    def index(self) -> JurisdictionIndex:
        """The point → jurisdiction index over this set, built once (position i is codes[i])."""
        # The lock makes concurrent first callers wait for one build instead of each paying
        # for their own.
        with self._index_lock:
            if self._index is None:
                built = JurisdictionIndex(self.codes, self.names, self.level, self.geometries)
                object.__setattr__(self, "_index", built)
            assert self._index is not None
            return self._index


def in_force(sets: Iterable[BoundarySet], level: str, when: datetime) -> BoundarySet | None:
    """The ``level`` set with the latest ``effective_from`` on or before the Vietnamese date of
    ``when`` (a naive ``when`` is read as Vietnamese local time); None if none was in force."""
    local = when.astimezone(LEGAL_ZONE) if when.tzinfo is not None else when
    day = local.date()
    candidates = [s for s in sets if s.level == level and s.effective_from <= day]
    return max(candidates, key=lambda s: s.effective_from, default=None)


@dataclass(frozen=True)
class Repair:
    """An invalid geometry replaced by the polygonal part of ``shapely.make_valid``."""

    feature: int  # 1-based position in the file
    code: str
    reason: str  # shapely.is_valid_reason, e.g. "Self-intersection[107.5 16.4]"


@dataclass(frozen=True)
class Skip:
    """A feature left out because it has no polygon to route by."""

    feature: int
    code: str
    reason: str


@dataclass(frozen=True)
class BoundaryFile:
    """A boundary file read and checked: the set to store and what was done to get it."""

    boundaries: BoundarySet
    source_name: str
    reprojected_from: str | None = None  # the file's CRS when it was not EPSG:4326
    crs_assumed: bool = False  # the file had no CRS; EPSG:4326 was assumed
    repairs: tuple[Repair, ...] = ()
    skips: tuple[Skip, ...] = ()

    def warnings(self) -> list[str]:
        """One line per thing the user should check: assumed CRS, repairs, skipped features."""
        lines = []
        if self.crs_assumed:
            lines.append(f"{self.source_name}: no CRS in the file; assumed EPSG:4326 (lon/lat)")
        lines += [
            f"{self.source_name}: {_feature(r.feature, r.code)}: invalid geometry ({r.reason}); "
            "repaired with make_valid, polygonal parts kept"
            for r in self.repairs
        ]
        lines += [
            f"{self.source_name}: {_feature(s.feature, s.code)}: skipped: {s.reason}"
            for s in self.skips
        ]
        return lines


def read_boundary_file(
    path: Path | str,
    level: str,
    effective_from: date,
    *,
    code_field: str = "code",
    name_field: str = "name",
    parent_field: str | None = None,
    layer: str | None = None,
) -> BoundaryFile:
    """Read one boundary set from a vector file, reprojecting to EPSG:4326 and repairing
    invalid polygons; raises InvalidInput, naming the file, for anything it cannot import."""
    path = Path(path)
    source = path.name or str(path)
    if level not in LEVELS:
        raise InvalidInput(f'{source}: level is "{level}", must be one of {", ".join(LEVELS)}')
    frame = _read(path, source, layer)
    if len(frame) == 0:
        raise InvalidInput(
            f"{source}: no features; a boundary file needs at least one Polygon or MultiPolygon"
        )

    fields = {"code": code_field, "name": name_field}
    if parent_field:
        fields["parent"] = parent_field
    columns = [str(c) for c in frame.columns if c != frame.geometry.name]
    missing = [f for f in fields.values() if f not in columns]
    if missing:
        options = {v: k for k, v in fields.items()}
        raise InvalidInput(
            f"{source}: no field "
            + ", ".join(f'"{m}" (--{options[m]}-field)' for m in missing)
            + f"; the fields are: {', '.join(columns) or '(none)'}"
        )

    reprojected_from = None
    crs_assumed = frame.crs is None
    if frame.crs is not None and not frame.crs.equals("EPSG:4326", ignore_axis_order=True):
        reprojected_from = frame.crs.to_string()
        frame = frame.to_crs(4326)

    codes = _texts(frame[code_field])
    geoms = shapely.force_2d(np.asarray(frame.geometry.array, dtype=object))
    keep, repairs, skips = _polygons(geoms, codes)
    if not keep.any():
        shown = "; ".join(f"{_feature(s.feature, s.code)}: {s.reason}" for s in skips[:5])
        more = f"; and {len(skips) - 5} more" if len(skips) > 5 else ""
        raise InvalidInput(
            f"{source}: no usable polygons among {len(frame)} features ({shown}{more}); "
            "jurisdictions must be Polygon or MultiPolygon features"
        )

    rows = np.flatnonzero(keep)
    names = _texts(frame[name_field])
    parents = _texts(frame[parent_field]) if parent_field else [""] * len(frame)
    _check_text(source, rows, codes, code_field, "code")
    _check_text(source, rows, names, name_field, "name")
    _check_unique(source, rows, codes)
    kept = geoms[rows]
    _check_lon_lat(source, kept, crs_assumed, reprojected_from)

    return BoundaryFile(
        boundaries=BoundarySet(
            level=level,
            effective_from=effective_from,
            codes=tuple(codes[i] for i in rows),
            names=tuple(names[i] for i in rows),
            parent_codes=tuple(parents[i] or None for i in rows),
            geometries=tuple(kept),
        ),
        source_name=source,
        reprojected_from=reprojected_from,
        crs_assumed=crs_assumed,
        repairs=tuple(repairs),
        skips=tuple(skips),
    )


def _read(path: Path, source: str, layer: str | None) -> Any:
    """The file's features as a GeoDataFrame (geopandas with the pyogrio engine)."""
    import geopandas as gpd
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError, FieldError, GeometryError

    unreadable = (DataSourceError, DataLayerError, FieldError, GeometryError, OSError)
    # GDAL also reads virtual paths (/vsizip/..., /vsicurl/...), which are not files here.
    if not str(path).startswith("/vsi") and not path.exists():
        raise InvalidInput(f"{source}: no such file ({path})")
    try:
        layers = [str(name) for name in pyogrio.list_layers(path)[:, 0]]
    except unreadable as exc:
        raise InvalidInput(f"{source}: cannot read it ({exc}); accepted: {_FORMATS}") from None
    if layer is None and len(layers) > 1:
        raise InvalidInput(
            f"{source}: has {len(layers)} layers ({', '.join(layers)}); choose one with --layer"
        )
    if layer is not None and layer not in layers:
        raise InvalidInput(
            f'{source}: no layer "{layer}"; its layers are: {", ".join(layers) or "(none)"}'
        )
    try:
        frame = gpd.read_file(path, engine="pyogrio", layer=layer)
    except unreadable as exc:
        raise InvalidInput(f"{source}: cannot read it ({exc}); accepted: {_FORMATS}") from None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.active_geometry_name is None:
        raise InvalidInput(
            f"{source}: has no geometry, only a table; jurisdictions must be Polygon or "
            f"MultiPolygon features ({_FORMATS})"
        )
    return frame


def _polygons(
    geoms: npt.NDArray[np.object_], codes: list[str]
) -> tuple[npt.NDArray[np.bool_], list[Repair], list[Skip]]:
    """Which features to keep (``geoms`` is repaired in place) and what was repaired or skipped."""
    types = shapely.get_type_id(geoms)
    polygonal = (types == _POLYGON) | (types == _MULTIPOLYGON)
    empty = shapely.is_empty(geoms)
    keep = polygonal & ~empty
    skips: list[Skip] = []
    for i in np.flatnonzero(~keep):
        if types[i] < 0:
            reason = "no geometry"
        elif not polygonal[i]:
            reason = f"a {geoms[i].geom_type}, not a Polygon or MultiPolygon"
        else:
            reason = f"an empty {geoms[i].geom_type}"
        skips.append(Skip(int(i) + 1, codes[i], reason))

    repairs: list[Repair] = []
    for i in np.flatnonzero(keep & ~shapely.is_valid(geoms)):
        reason = str(shapely.is_valid_reason(geoms[i]))
        fixed = _polygonal_part(shapely.make_valid(geoms[i]))
        if fixed is None:
            keep[i] = False
            skips.append(Skip(int(i) + 1, codes[i], f"invalid ({reason}) and has no area left"))
        else:
            geoms[i] = fixed
            repairs.append(Repair(int(i) + 1, codes[i], reason))
    skips.sort(key=lambda s: s.feature)
    return keep, repairs, skips


def _polygonal_part(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygons in a ``make_valid`` result, as one valid geometry (None if there are none)."""
    parts = shapely.get_parts(shapely.get_parts(geom))  # collections may hold multipolygons
    polygons = parts[shapely.get_type_id(parts) == _POLYGON]
    polygons = polygons[~shapely.is_empty(polygons)]
    if polygons.size == 0:
        return None
    if polygons.size == 1:
        return polygons[0]
    merged = shapely.multipolygons(polygons)
    # Polygons from different members of a collection may share an edge, which a MultiPolygon
    # must not; dissolving them fixes that.
    return merged if shapely.is_valid(merged) else shapely.union_all(polygons)


def _texts(column: Any) -> list[str]:
    """A column's values as text: integral numbers without ".0", missing values as ""."""
    missing = column.isna().to_numpy()
    return ["" if gone else _text(v) for v, gone in zip(column.tolist(), missing, strict=True)]


def _text(value: Any) -> str:
    # Shapefile and GeoPackage integer fields with gaps come back as floats: 474.0 means "474".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _feature(number: int, code: str) -> str:
    return f'feature {number} (code "{code}")' if code else f"feature {number}"


def _check_text(
    source: str, rows: npt.NDArray[np.intp], values: list[str], field_name: str, what: str
) -> None:
    for i in rows:
        if not values[i]:
            raise InvalidInput(
                f'{source}: feature {i + 1}: field "{field_name}" is empty; every jurisdiction '
                f"needs a {what} (choose the field with --{what}-field)"
            )


def _check_unique(source: str, rows: npt.NDArray[np.intp], codes: list[str]) -> None:
    first: dict[str, int] = {}
    for i in rows:
        seen = first.setdefault(codes[i], int(i))
        if seen != i:
            raise InvalidInput(
                f'{source}: code "{codes[i]}" is used by features {seen + 1} and {i + 1}; '
                "codes must be unique within a boundary set"
            )


def _check_lon_lat(
    source: str, geoms: npt.NDArray[np.object_], crs_assumed: bool, reprojected_from: str | None
) -> None:
    minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(geoms))
    # Chained comparisons are False for NaN, so non-finite coordinates fail here too.
    if -180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90:
        return
    if crs_assumed:
        where = "the file has no CRS, so EPSG:4326 was assumed"
    elif reprojected_from:
        where = f"after reprojecting from {reprojected_from}"
    else:
        where = "the file says EPSG:4326"
    raise InvalidInput(
        f"{source}: coordinates span x {minx:g} to {maxx:g}, y {miny:g} to {maxy:g} "
        f"({where}), which are not longitudes and latitudes; give the file its correct CRS"
    )
