"""The jurisdiction index's build-time half: input checks, the grid of cells classified once,
and the projection and segment helpers the lookups share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from ioc.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32]

_POLYGON = 3
_MULTIPOLYGON = 6
_NO_RANK = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Grid:
    """Cell classification. ``labels``: ≥ 0 jurisdiction, -1 nothing, ≤ -2 ambiguous cell."""

    x0: float
    y0: float
    cell: float
    inv_cell: float
    nx: int
    ny: int
    labels: IndexArray
    candidates: IndexArray  # (ambiguous cells, k): jurisdiction indices in tie order, -1 pads


def utm_crs_for(bounds: Sequence[float] | FloatArray) -> pyproj.CRS:
    """WGS 84 / UTM zone of a (minx, miny, maxx, maxy) box's centre; Huế gives 32648 (48N)."""
    lon = (float(bounds[0]) + float(bounds[2])) / 2
    lat = (float(bounds[1]) + float(bounds[3])) / 2
    zone = min(int((lon + 180) // 6) + 1, 60)
    return pyproj.CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def metres_per_degree_floor(transformer: pyproj.Transformer, bounds: FloatArray) -> float:
    """Smallest metric length of a degree step east or north, sampled over ``bounds``."""
    lon, lat = np.meshgrid(
        np.linspace(bounds[0], bounds[2], 9), np.linspace(bounds[1], bounds[3], 9)
    )
    step = 1e-3
    x0, y0 = transformer.transform(lon, lat)
    xe, ye = transformer.transform(lon + step, lat)
    xn, yn = transformer.transform(lon, lat + step)
    east = np.hypot(np.subtract(xe, x0), np.subtract(ye, y0))
    north = np.hypot(np.subtract(xn, x0), np.subtract(yn, y0))
    return float(min(east.min(), north.min())) / step


def spread(mask: npt.NDArray[np.bool_], k: int, axis: int) -> npt.NDArray[np.bool_]:
    """True wherever ``mask`` is True within ``k`` places along ``axis`` (a 1-D dilation)."""
    n = mask.shape[axis]
    count = np.cumsum(mask, axis=axis, dtype=np.int32)
    count = np.concatenate([np.zeros_like(np.take(count, [0], axis=axis)), count], axis=axis)
    pos = np.arange(n)
    upper = np.take(count, np.minimum(pos + k + 1, n), axis=axis)
    lower = np.take(count, np.maximum(pos - k, 0), axis=axis)
    return upper - lower > 0


def coords(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    if x.shape != y.shape:
        raise InvalidInput(f"lon has shape {x.shape} and lat {y.shape}; they must match")
    return x, y


def check_codes(codes: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for code in codes:
        if code in seen:
            raise InvalidInput(f'jurisdiction code "{code}" appears more than once')
        seen.add(code)


def check_geometries(geoms: npt.NDArray[np.object_], codes: tuple[str, ...]) -> None:
    for code, geom in zip(codes, geoms, strict=True):
        if not isinstance(geom, BaseGeometry):
            raise InvalidInput(f'jurisdiction "{code}": geometry is {geom!r}, not a shape')
    types = shapely.get_type_id(geoms)
    i = _first((types != _POLYGON) & (types != _MULTIPOLYGON))
    if i is not None:
        raise InvalidInput(
            f'jurisdiction "{codes[i]}": geometry is a {geoms[i].geom_type}, '
            "must be a Polygon or MultiPolygon"
        )
    i = _first(shapely.is_empty(geoms))
    if i is not None:
        raise InvalidInput(f'jurisdiction "{codes[i]}": geometry is empty')
    # An invalid polygon has no well-defined inside, so an exact answer would be meaningless.
    i = _first(~shapely.is_valid(geoms))
    if i is not None:
        raise InvalidInput(
            f'jurisdiction "{codes[i]}": geometry is invalid '
            f"({shapely.is_valid_reason(geoms[i])}); repair it first, e.g. shapely.make_valid"
        )


def _first(mask: npt.NDArray[np.bool_]) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def ring_segments(
    geoms: npt.NDArray[np.object_],
) -> tuple[FloatArray, FloatArray, IndexArray]:
    """Every ring segment of every geometry: x (n, 2), y (n, 2), owning geometry index."""
    parts, part_owner = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    same = np.flatnonzero(ring[:-1] == ring[1:])
    sx = np.stack([coords[same, 0], coords[same + 1, 0]], axis=1)
    sy = np.stack([coords[same, 1], coords[same + 1, 1]], axis=1)
    return sx, sy, part_owner[ring_part[ring[same]]].astype(np.int32)


def grouped(
    predicate: Callable[..., Any],
    geoms: npt.NDArray[np.object_],
    who: npt.NDArray[np.int32],
    x: FloatArray,
    y: FloatArray,
) -> npt.NDArray[np.bool_]:
    """``predicate(geoms[who[i]], x[i], y[i])`` with one GEOS call per distinct geometry."""
    result = np.zeros(who.shape[0], dtype=bool)
    if who.size == 0:
        return result
    order = np.argsort(who, kind="stable")
    sorted_who = who[order]
    edges = np.flatnonzero(np.diff(sorted_who)) + 1
    for part in np.split(order, edges):
        result[part] = predicate(geoms[who[part[0]]], x[part], y[part])
    return result


def build_grid(
    geoms: npt.NDArray[np.object_],
    rank: IndexArray,
    order: IndexArray,
    max_cells: int,
) -> Grid:
    minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(geoms))
    width, height = maxx - minx, maxy - miny
    cell = math.sqrt(width * height / max_cells) if width * height > 0 else max(width, height)
    cell = max(cell, max(width, height) / 65536, 1e-9)
    # One empty cell of margin on every side: every vertex then has all 8 neighbour cells on the
    # grid, and points on the bbox edge still land on a cell.
    nx = int(width / cell) + 3
    ny = int(height / cell) + 3
    x0, y0, inv = minx - cell, miny - cell, 1.0 / cell

    inside_cells: list[npt.NDArray[np.intp]] = []
    inside_who: list[npt.NDArray[np.int32]] = []
    edge_cells: list[npt.NDArray[np.intp]] = []
    edge_who: list[npt.NDArray[np.int32]] = []
    for i, geom in enumerate(geoms):
        inside, edge = _classify_cells(geom, x0, y0, cell, nx, ny)
        inside_cells.append(inside)
        inside_who.append(np.full(inside.shape[0], i, dtype=np.int32))
        edge_cells.append(edge)
        edge_who.append(np.full(edge.shape[0], i, dtype=np.int32))

    # best[c]: tie rank of the first jurisdiction (by code) whose interior holds all of cell c.
    best = np.full(nx * ny, _NO_RANK, dtype=np.int32)
    np.minimum.at(best, np.concatenate(inside_cells), rank[np.concatenate(inside_who)])
    labels = np.where(best < _NO_RANK, order[np.minimum(best, len(order) - 1)], -1)
    # One extra label past the grid, -1, is where off-grid and non-finite points look.
    labels = np.append(labels, -1).astype(np.int32)

    # A boundary only matters in a cell if its jurisdiction would beat that cell's best one.
    e_cell = np.concatenate(edge_cells)
    e_who = np.concatenate(edge_who)
    e_rank = rank[e_who]
    beats = e_rank < best[e_cell]
    e_cell, e_rank = e_cell[beats], e_rank[beats]
    if e_cell.size == 0:
        empty = np.full((0, 1), -1, dtype=np.int32)
        return Grid(x0, y0, cell, inv, nx, ny, labels, empty)

    # The cell's best jurisdiction (if any) goes last in its candidate list: points the
    # boundary-crossing candidates do not cover are certainly in it.
    has_best = np.unique(e_cell)
    has_best = has_best[best[has_best] < _NO_RANK]
    e_cell = np.concatenate([e_cell, has_best])
    e_rank = np.concatenate([e_rank, best[has_best]])

    srt = np.lexsort((e_rank, e_cell))
    e_cell, e_rank = e_cell[srt], e_rank[srt]
    starts = np.r_[True, e_cell[1:] != e_cell[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    slot = np.arange(e_cell.shape[0]) - first[group]
    candidates = np.full((first.shape[0], int(slot.max()) + 1), -1, dtype=np.int32)
    candidates[group, slot] = order[e_rank]
    labels[e_cell[first]] = -2 - np.arange(first.shape[0], dtype=np.int32)
    return Grid(x0, y0, cell, inv, nx, ny, labels, candidates)


def _classify_cells(
    geom: BaseGeometry, x0: float, y0: float, cell: float, nx: int, ny: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Grid cells wholly inside ``geom`` and cells its boundary may touch (global numbers)."""
    sx, sy = _boundary_samples(geom, x0, y0, 1.0 / cell)
    ix = np.floor(sx).astype(np.intp)
    iy = np.floor(sy).astype(np.intp)
    c0, c1 = max(int(ix.min()) - 1, 0), min(int(ix.max()) + 1, nx - 1)
    r0, r1 = max(int(iy.min()) - 1, 0), min(int(iy.max()) + 1, ny - 1)
    h, w = r1 - r0 + 1, c1 - c0 + 1

    hit = np.zeros((h, w), dtype=bool)
    hit[iy - r0, ix - c0] = True
    # Samples are at most half a cell apart along each axis, so every boundary point is within
    # a quarter cell of one; marking the 3x3 block around each sample's cell therefore marks
    # every cell the boundary touches, with room to spare for rounding in the cell arithmetic.
    rows = hit.copy()
    rows[1:] |= hit[:-1]
    rows[:-1] |= hit[1:]
    edge = rows.copy()
    edge[:, 1:] |= rows[:, :-1]
    edge[:, :-1] |= rows[:, 1:]

    # Cells with no boundary form horizontal runs; a run cannot cross the boundary, so its
    # first cell's centre decides the whole run.
    free = ~edge
    start = free.copy()
    start[:, 1:] &= edge[:, :-1]
    run = np.cumsum(start.ravel()) - 1
    sr, sc = np.nonzero(start)
    centre_x = x0 + (c0 + sc + 0.5) * cell
    centre_y = y0 + (r0 + sr + 0.5) * cell
    run_inside = shapely.contains_xy(geom, centre_x, centre_y)
    inside = free.ravel() & (run_inside[np.maximum(run, 0)] if run_inside.size else False)

    local = np.arange(h * w)
    global_cell = (r0 + local // w) * nx + c0 + local % w
    return global_cell[inside], global_cell[edge.ravel()]


def _boundary_samples(
    geom: BaseGeometry, x0: float, y0: float, inv: float
) -> tuple[FloatArray, FloatArray]:
    """Points along every ring of ``geom``, in grid units, at most half a cell apart per axis."""
    rings = shapely.get_rings(shapely.get_parts(geom))
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    gx = (coords[:, 0] - x0) * inv
    gy = (coords[:, 1] - y0) * inv
    same = ring[:-1] == ring[1:]  # consecutive vertices of one ring form a segment
    ax, ay = gx[:-1][same], gy[:-1][same]
    dx, dy = gx[1:][same] - ax, gy[1:][same] - ay
    steps = np.maximum(np.ceil(2.0 * np.maximum(np.abs(dx), np.abs(dy))), 1).astype(np.intp)
    seg = np.repeat(np.arange(steps.shape[0]), steps)
    t = (np.arange(seg.shape[0]) - (np.cumsum(steps) - steps)[seg]) / steps[seg]
    # Each ring is closed, so the segments' start points (t = 0) already include every vertex.
    return ax[seg] + t * dx[seg], ay[seg] + t * dy[seg]
