"""Point → jurisdiction lookup: exact, vectorised point-in-polygon for geo-routing.

The index lays a uniform grid of square cells (in degrees) over the jurisdictions. At build
time each cell is classified once:

* no jurisdiction boundary comes near it → every point in it has the same answer (a
  jurisdiction or nothing), stored in the cell;
* a boundary passes through or next to it → the cell is *ambiguous* and keeps the short list
  of jurisdictions that may cover its points, in tie-rule order.

A lookup is then a few numpy passes (cell number, one gather) for most points; only points
that fall in ambiguous cells are tested exactly with GEOS (prepared ``intersects_xy``), grouped
by candidate so there is one GEOS call per candidate jurisdiction rather than per point. The
answer is always the exact GEOS answer: the grid only decides which points need asking.

Points outside every jurisdiction can fall back to the nearest one within a distance in metres,
measured in a metric projection (by default the UTM zone of the data's centre) against an
STRtree of the boundary segments.

Rule for points covered by several jurisdictions (a shared border or vertex, or overlapping
data): the covering jurisdiction with the **smallest code** wins (codes compare as strings).
"Covered" means GEOS ``covers``/``intersects`` semantics, so points on a border are never lost.
Choosing by code rather than by position keeps the answer stable when the same boundaries are
loaded in a different order.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from ioc.errors import InvalidInput
from ioc.routing.grid import (
    FloatArray,
    IndexArray,
    build_grid,
    check_codes,
    check_geometries,
    coords,
    grouped,
    metres_per_degree_floor,
    ring_segments,
    spread,
    utm_crs_for,
)

if TYPE_CHECKING:
    import geopandas as gpd

HowArray = npt.NDArray[np.int8]

#: Default cap on grid cells: 2 Mi cells is 8 MiB of labels and sends under 4 % of the
#: points in Huế's bbox to the exact GEOS test (40 wards, 128k vertices); more cells buy little.
DEFAULT_MAX_CELLS = 1 << 21


class How(enum.IntEnum):
    """Why a point was routed where it was."""

    NONE = 0  # outside every jurisdiction and farther than the allowed distance
    INSIDE = 1  # in the interior of the jurisdiction
    BORDER = 2  # on the jurisdiction's boundary (a shared border goes by the tie rule)
    NEAREST = 3  # outside all, assigned to the nearest one within the allowed distance


_HOW_LABELS = np.array([h.name.lower() for h in How])


@dataclass(frozen=True)
class RouteResult:
    """Per point: jurisdiction index (-1 for none), how it was chosen, distance in metres."""

    index: IndexArray
    how: HowArray
    distance_m: FloatArray  # 0 inside or on a border, NaN when no jurisdiction was found

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def how_labels(self) -> npt.NDArray[np.str_]:
        """The ``how`` column as strings: "inside", "border", "nearest", "none"."""
        return _HOW_LABELS[self.how]


class JurisdictionIndex:
    """Exact point → jurisdiction lookup over polygons in EPSG:4326 (lon, lat)."""

    def __init__(
        self,
        codes: Sequence[str],
        names: Sequence[str],
        levels: Sequence[str] | str,
        geometries: Sequence[BaseGeometry] | npt.NDArray[np.object_],
        *,
        max_cells: int = DEFAULT_MAX_CELLS,
        metric_crs: str | int | pyproj.CRS | None = None,
    ) -> None:
        geoms = np.asarray(geometries, dtype=object)
        n = geoms.shape[0] if geoms.ndim == 1 else -1
        level_list = [levels] * max(n, 0) if isinstance(levels, str) else list(levels)
        if not len(codes) == len(names) == len(level_list) == n:
            raise InvalidInput(
                f"codes, names, levels and geometries must have one entry per jurisdiction; "
                f"got {len(codes)}, {len(names)}, {len(level_list)} and shape {geoms.shape}"
            )
        if n == 0:
            raise InvalidInput("a jurisdiction index needs at least one jurisdiction")
        if max_cells < 1:
            raise InvalidInput(f"max_cells is {max_cells}, must be at least 1")
        self.codes: tuple[str, ...] = tuple(str(c) for c in codes)
        self.names: tuple[str, ...] = tuple(str(c) for c in names)
        self.levels: tuple[str, ...] = tuple(str(c) for c in level_list)
        check_codes(self.codes)
        check_geometries(geoms, self.codes)
        # Own copies: preparing mutates GEOS objects, and the caller's must stay theirs.
        self.geometries: npt.NDArray[np.object_] = shapely.from_wkb(shapely.to_wkb(geoms))
        shapely.prepare(self.geometries)
        # GEOS builds a prepared polygon's point locator on first use, without a lock. Build
        # them now (a point inside each envelope gets past the envelope shortcut), so threads
        # sharing this index only ever read them.
        b = shapely.bounds(self.geometries)
        shapely.intersects_xy(self.geometries, (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)

        # rank[i] is jurisdiction i's place in the tie order (smallest code first).
        self._order: IndexArray = np.argsort(np.array(self.codes), kind="stable").astype(np.int32)
        self._rank: IndexArray = np.empty(n, dtype=np.int32)
        self._rank[self._order] = np.arange(n, dtype=np.int32)
        self._grid = build_grid(self.geometries, self._rank, self._order, max_cells)

        bounds = shapely.total_bounds(self.geometries)
        crs = metric_crs if metric_crs is not None else utm_crs_for(bounds)
        self.metric_crs: pyproj.CRS = pyproj.CRS.from_user_input(crs)
        units = {axis.unit_name for axis in self.metric_crs.axis_info}
        if not self.metric_crs.is_projected or units != {"metre"}:
            raise InvalidInput(
                f"metric_crs is {self.metric_crs.name} (units {sorted(units)}); "
                "it must be a projected CRS in metres, e.g. EPSG:32648 or EPSG:3405"
            )
        self._to_metric = pyproj.Transformer.from_crs(
            pyproj.CRS.from_epsg(4326), self.metric_crs, always_xy=True
        )
        # A floor on the metres spanned by one grid cell, halved for safety: it lets the
        # nearest search skip points whose cell is provably too far from every jurisdiction.
        self._cell_m = metres_per_degree_floor(self._to_metric, bounds) * self._grid.cell / 2
        self._near_cache: dict[int, npt.NDArray[np.bool_]] = {}
        # Distance from an uncovered point to a polygon is its distance to the polygon's rings,
        # so the tree holds ring segments: a nearest query then costs a few segment distances
        # instead of a walk over every vertex of each nearby polygon.
        sx, sy, owner = ring_segments(self.geometries)
        ax, ay = self._project(sx[:, 0], sy[:, 0])
        bx, by = self._project(sx[:, 1], sy[:, 1])
        self._segment_owner = owner
        self._segment_tree = shapely.STRtree(
            shapely.linestrings(np.stack([np.c_[ax, ay], np.c_[bx, by]], axis=1))
        )

    @classmethod
    def from_geodataframe(
        cls,
        gdf: gpd.GeoDataFrame,
        code_field: str = "code",
        name_field: str = "name",
        *,
        level_field: str | None = None,
        level: str = "ward",
        max_cells: int = DEFAULT_MAX_CELLS,
        metric_crs: str | int | pyproj.CRS | None = None,
    ) -> JurisdictionIndex:
        """Build from a GeoDataFrame; reprojects to EPSG:4326 when it is in another CRS."""
        wanted = [code_field, name_field] + ([level_field] if level_field else [])
        missing = [f for f in wanted if f not in gdf.columns]
        if missing:
            raise InvalidInput(
                f"column(s) {missing} not in the jurisdiction table; it has {list(gdf.columns)}"
            )
        if gdf.crs is not None and not gdf.crs.equals("EPSG:4326", ignore_axis_order=True):
            gdf = gdf.to_crs(4326)
        levels: Sequence[str] | str = [str(v) for v in gdf[level_field]] if level_field else level
        return cls(
            [str(v) for v in gdf[code_field]],
            [str(v) for v in gdf[name_field]],
            levels,
            np.asarray(gdf.geometry.values, dtype=object),
            max_cells=max_cells,
            metric_crs=metric_crs,
        )

    def __len__(self) -> int:
        return len(self.codes)

    def code_at(self, index: npt.ArrayLike) -> npt.NDArray[np.object_]:
        """Codes for jurisdiction indices, None where the index is -1."""
        idx = np.asarray(index, dtype=np.intp)
        table = np.array([*self.codes, None], dtype=object)
        return table[np.where(idx < 0, len(self.codes), idx)]

    @property
    def grid_info(self) -> dict[str, float | int]:
        """Size of the cell grid and how much of it needs exact tests (for benchmarks)."""
        g = self._grid
        return {
            "nx": g.nx,
            "ny": g.ny,
            "cell_deg": g.cell,
            "ambiguous_cells": int(g.candidates.shape[0]),
            "max_candidates": int(g.candidates.shape[1]),
        }

    def locate(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> IndexArray:
        """Index of the jurisdiction covering each point (tie rule on borders), -1 if none."""
        x, y = coords(lon, lat)
        return self._locate_flat(x.ravel(), y.ravel())[0].reshape(x.shape)

    def nearest(
        self, lon: npt.ArrayLike, lat: npt.ArrayLike, max_distance_m: float
    ) -> tuple[IndexArray, FloatArray]:
        """Nearest jurisdiction within ``max_distance_m`` metres, and the distance (NaN if none).

        A covered point gets its ``locate`` answer at distance 0. For the others the distance
        is to the jurisdiction's boundary with vertices projected to ``metric_crs`` (edges
        straight there; real boundaries have vertices metres apart, so the bend is negligible),
        and equal distances go by the same smallest-code rule.
        """
        if not (max_distance_m > 0 and math.isfinite(max_distance_m)):
            raise InvalidInput(f"max_distance_m is {max_distance_m}, must be a positive number")
        x, y = coords(lon, lat)
        index, dist = self._nearest_flat(x.ravel(), y.ravel(), max_distance_m)
        return index.reshape(x.shape), dist.reshape(x.shape)

    def route_points(
        self, lon: npt.ArrayLike, lat: npt.ArrayLike, max_distance_m: float = 0.0
    ) -> RouteResult:
        """Locate points, fall back to the nearest jurisdiction, and say how each was decided.

        ``max_distance_m`` = 0 disables the nearest fallback.
        """
        if not (max_distance_m >= 0 and math.isfinite(max_distance_m)):
            raise InvalidInput(f"max_distance_m is {max_distance_m}, must be 0 or more")
        x, y = coords(lon, lat)
        x, y = x.ravel(), y.ravel()
        index, amb_sel = self._locate_flat(x, y)
        how = np.where(index >= 0, How.INSIDE, How.NONE).astype(np.int8)
        dist = np.where(index >= 0, 0.0, np.nan)

        # Only points that needed the exact test can lie on a boundary: a resolved cell has none.
        hit = amb_sel[index[amb_sel] >= 0]
        interior = grouped(shapely.contains_xy, self.geometries, index[hit], x[hit], y[hit])
        how[hit[~interior]] = How.BORDER

        if max_distance_m > 0:
            out = np.flatnonzero(index < 0)
            near, near_d = self._nearest_uncovered(x[out], y[out], max_distance_m)
            found = near >= 0  # none of these is covered, so every find is a nearest one
            index[out[found]] = near[found]
            how[out[found]] = How.NEAREST
            dist[out[found]] = near_d[found]
        return RouteResult(index=index, how=how, distance_m=dist)

    def _cells(self, x: FloatArray, y: FloatArray) -> npt.NDArray[np.intp]:
        """Grid cell of each point; off-grid and non-finite points get the extra last cell."""
        g = self._grid
        fx = (x - g.x0) * g.inv_cell
        fy = (y - g.y0) * g.inv_cell
        # NaN fails every comparison, so non-finite points drop out here as "off the grid".
        off_grid = ~((fx >= 0) & (fx < g.nx) & (fy >= 0) & (fy < g.ny))
        # Zero them before the int cast, which warns on NaN and is undefined out of range.
        np.copyto(fx, 0.0, where=off_grid)
        np.copyto(fy, 0.0, where=off_grid)
        cell = fy.astype(np.intp)
        cell *= g.nx
        cell += fx.astype(np.intp)
        np.copyto(cell, g.nx * g.ny, where=off_grid)
        return cell

    def _locate_flat(self, x: FloatArray, y: FloatArray) -> tuple[IndexArray, npt.NDArray[np.intp]]:
        """Indices, and which points needed the exact test (only they can be on a border)."""
        g = self._grid
        cell = self._cells(x, y)
        index = g.labels[cell]
        amb_sel = np.flatnonzero(index <= -2)
        if amb_sel.size:
            index[amb_sel] = self._resolve(-2 - index[amb_sel], x[amb_sel], y[amb_sel])
        return index, amb_sel

    def _resolve(self, amb: npt.NDArray[np.int32], x: FloatArray, y: FloatArray) -> IndexArray:
        """Exact answer for points in ambiguous cells: first covering candidate in tie order."""
        cand = self._grid.candidates[amb]
        out = np.full(amb.shape[0], -1, dtype=np.int32)
        todo = np.arange(amb.shape[0])
        for k in range(cand.shape[1]):
            who = cand[todo, k]
            keep = who >= 0  # -1 pads the end of a row: no candidates left for that point
            todo, who = todo[keep], who[keep]
            if todo.size == 0:
                break
            covered = grouped(shapely.intersects_xy, self.geometries, who, x[todo], y[todo])
            out[todo[covered]] = who[covered]
            todo = todo[~covered]
        return out

    def _nearest_flat(
        self, x: FloatArray, y: FloatArray, max_distance_m: float
    ) -> tuple[IndexArray, FloatArray]:
        index, _ = self._locate_flat(x, y)
        dist = np.where(index >= 0, 0.0, np.nan)
        out = np.flatnonzero(index < 0)
        near, near_d = self._nearest_uncovered(x[out], y[out], max_distance_m)
        index[out] = near
        dist[out] = near_d
        return index, dist

    def _nearest_uncovered(
        self, x: FloatArray, y: FloatArray, max_distance_m: float
    ) -> tuple[IndexArray, FloatArray]:
        """Nearest jurisdiction for points known to be outside all of them (-1, NaN if none)."""
        index = np.full(x.shape[0], -1, dtype=np.int32)
        dist = np.full(x.shape[0], np.nan)
        near = self._near_cells(max_distance_m)[self._cells(x, y)]
        out = np.flatnonzero(near & np.isfinite(x) & np.isfinite(y))
        if out.size == 0:
            return index, dist
        mx, my = self._project(x[out], y[out])
        (pt, seg), d = self._segment_tree.query_nearest(
            shapely.points(mx, my),
            max_distance=max_distance_m,
            return_distance=True,
            all_matches=True,
        )
        # Equidistant matches (a point facing a shared border) go to the smallest code.
        who = self._segment_owner[seg]
        order = np.lexsort((self._rank[who], pt))
        first = order[np.r_[True, pt[order][1:] != pt[order][:-1]]] if order.size else order
        index[out[pt[first]]] = who[first]
        dist[out[pt[first]]] = d[first]
        return index, dist

    def _near_cells(self, max_distance_m: float) -> npt.NDArray[np.bool_]:
        """Per cell (plus the off-grid one): may a point there be within the distance of any?

        A cell more than k cells (Chebyshev) from every cell holding part of a jurisdiction is
        at least k cell widths away in longitude or latitude, and k * cell_m > max_distance_m.
        """
        k = int(max_distance_m // self._cell_m) + 1
        near = self._near_cache.get(k)
        if near is None:
            g = self._grid
            occupied = (g.labels[:-1] != -1).reshape(g.ny, g.nx)
            near = spread(spread(occupied, k, axis=0), k, axis=1).ravel()
            near = np.append(near, True)  # off the grid: unknown, so ask the tree
            if len(self._near_cache) >= 8:  # a few distances in use; do not grow unbounded
                self._near_cache.clear()
            self._near_cache[k] = near
        return near

    def _project(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        mx, my = self._to_metric.transform(x, y)
        return np.asarray(mx, dtype=np.float64), np.asarray(my, dtype=np.float64)
