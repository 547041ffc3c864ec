"""Geo-routing benchmark: the jurisdiction index against ``geopandas.sjoin`` in one run.

Run: ``python -m ioc.bench.geo [path.geojson] [--points N] [--seed S]``. The bar (DESIGN.md) is
≥ 1,000,000 points/s against Huế's 40 wards, ≥ 5× sjoin in the same run, 100 % agreement.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import shapely

from ioc.routing.index import DEFAULT_MAX_CELLS, How, JurisdictionIndex

DEFAULT_GEOJSON = Path("../shared/data/vn/hue_wards_2025.geojson")
DEFAULT_SEED = 20250701
BAR_POINTS_PER_S = 1_000_000
BAR_RATIO = 5.0

Figures = dict[str, float | int | str | bool]
T = TypeVar("T")


def sjoin_locate(
    polygons: gpd.GeoDataFrame,
    lon: npt.NDArray[np.float64],
    lat: npt.NDArray[np.float64],
    code_field: str = "code",
) -> npt.NDArray[np.int32]:
    """Reference answer from ``geopandas.sjoin`` ("intersects"), reduced by the same tie rule.

    Row positions of ``polygons`` are the jurisdiction indices; among the polygons covering a
    point the one with the smallest code wins, -1 where none covers it.
    """
    point, polygon = sjoin_matches(polygons, lon, lat, code_field)
    return tie_break(point, polygon, polygons, code_field, len(lon))


def sjoin_matches(
    polygons: gpd.GeoDataFrame,
    lon: npt.NDArray[np.float64],
    lat: npt.NDArray[np.float64],
    code_field: str = "code",
) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.integer]]:
    """(point position, polygon row position) for every polygon covering every point."""
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=polygons.crs)
    right = polygons[[code_field, "geometry"]].reset_index(drop=True)
    joined = gpd.sjoin(points, right, predicate="intersects", how="inner")
    return joined.index.to_numpy(), joined["index_right"].to_numpy()


def tie_break(
    point: npt.NDArray[np.integer],
    polygon: npt.NDArray[np.integer],
    polygons: gpd.GeoDataFrame,
    code_field: str,
    n_points: int,
) -> npt.NDArray[np.int32]:
    """Reduce (point, polygon) matches to one polygon per point: smallest code, else -1."""
    codes = np.array([str(c) for c in polygons[code_field]])
    order = np.argsort(codes, kind="stable")
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes))
    best = np.full(n_points, len(codes), dtype=np.int64)
    np.minimum.at(best, point.astype(np.intp), rank[polygon.astype(np.intp)])
    found = best < len(codes)
    out = np.full(n_points, -1, dtype=np.int32)
    out[found] = order[best[found]]
    return out


def run_route_bench(
    path_to_geojson: str | Path,
    n_points: int = 1_000_000,
    seed: int = DEFAULT_SEED,
    *,
    code_field: str = "code",
    name_field: str = "name",
    max_cells: int = DEFAULT_MAX_CELLS,
    max_distance_m: float = 500.0,
    repeats: int = 1,
) -> Figures:
    """Route ``n_points`` uniform random points in the file's bbox with the index and sjoin.

    Both sides are timed ``repeats`` times and the best taken. The sjoin time includes making
    the point GeoDataFrame, which the index does not need, but not the tie-rule reduction.
    """
    polygons = gpd.read_file(path_to_geojson)
    if polygons.crs is not None and not polygons.crs.equals("EPSG:4326", ignore_axis_order=True):
        polygons = polygons.to_crs(4326)
    polygons = polygons.reset_index(drop=True)

    started = time.perf_counter()
    index = JurisdictionIndex.from_geodataframe(
        polygons, code_field, name_field, max_cells=max_cells
    )
    build_s = time.perf_counter() - started

    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = (float(v) for v in polygons.total_bounds)
    lon = rng.uniform(minx, maxx, n_points)
    lat = rng.uniform(miny, maxy, n_points)

    index_s, found = _best_time(repeats, lambda: index.locate(lon, lat))
    sjoin_s, matches = _best_time(repeats, lambda: sjoin_matches(polygons, lon, lat, code_field))
    expected = tie_break(*matches, polygons, code_field, n_points)
    agree = found == expected

    # The older way: one prepared-polygon test per jurisdiction over all points.
    prepared_s, _ = _best_time(repeats, lambda: _prepared_loop(index, lon, lat))
    route_s, routed = _best_time(
        repeats, lambda: index.route_points(lon, lat, max_distance_m=max_distance_m)
    )

    index_rate = n_points / index_s
    sjoin_rate = n_points / sjoin_s
    figures: Figures = {
        "file": Path(path_to_geojson).name,
        "jurisdictions": len(index),
        "vertices": int(shapely.get_num_coordinates(index.geometries).sum()),
        "points": n_points,
        "seed": seed,
        "build_s": round(build_s, 4),
        "grid_cells": int(index.grid_info["nx"]) * int(index.grid_info["ny"]),
        "ambiguous_cells": int(index.grid_info["ambiguous_cells"]),
        "index_s": round(index_s, 4),
        "index_pts_per_s": round(index_rate),
        "sjoin_s": round(sjoin_s, 4),
        "sjoin_pts_per_s": round(sjoin_rate),
        "ratio": round(index_rate / sjoin_rate, 2),
        "agreement": float(agree.mean()) if n_points else 1.0,
        "mismatches": int((~agree).sum()),
        "covered_fraction": round(float((found >= 0).mean()), 4) if n_points else 0.0,
        "prepared_loop_pts_per_s": round(n_points / prepared_s),
        "route_max_distance_m": max_distance_m,
        "route_pts_per_s": round(n_points / route_s),
        "route_nearest": int((routed.how == How.NEAREST).sum()),
        "route_border": int((routed.how == How.BORDER).sum()),
    }
    figures["meets_bar"] = bool(
        figures["agreement"] == 1.0
        and index_rate >= BAR_POINTS_PER_S
        and index_rate / sjoin_rate >= BAR_RATIO
    )
    return figures


def _prepared_loop(
    index: JurisdictionIndex, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
) -> npt.NDArray[np.int32]:
    out = np.full(lon.shape[0], -1, dtype=np.int32)
    for i in np.argsort(np.array(index.codes), kind="stable"):
        todo = np.flatnonzero(out < 0)
        out[todo[shapely.intersects_xy(index.geometries[i], lon[todo], lat[todo])]] = i
    return out


def _best_time(repeats: int, work: Callable[[], T]) -> tuple[float, T]:
    best = float("inf")
    result: T | None = None
    for _ in range(max(repeats, 1)):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return best, result


def main(argv: Sequence[str] | None = None) -> int:
    """Print a human summary and a ``bench route: key=value …`` line; 1 if the bar is missed."""
    parser = argparse.ArgumentParser(prog="python -m ioc.bench.geo", description=__doc__)
    parser.add_argument("path", nargs="?", default=str(DEFAULT_GEOJSON), help="GeoJSON file")
    parser.add_argument("--points", type=int, default=1_000_000, help="random points to route")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--max-cells", type=int, default=DEFAULT_MAX_CELLS, help="grid size cap")
    parser.add_argument("--repeats", type=int, default=1, help="time each side N times, best")
    args = parser.parse_args(argv)
    if not Path(args.path).exists():
        parser.error(f'file "{args.path}" does not exist; pass a GeoJSON of jurisdictions')

    f = run_route_bench(
        args.path, args.points, args.seed, max_cells=args.max_cells, repeats=args.repeats
    )
    print(f"geo-routing: {f['points']:,} random points in the bbox of {f['file']}")
    print(f"  {f['jurisdictions']} jurisdictions, {f['vertices']:,} vertices")
    print(
        f"  index build      {f['build_s']:.3f} s ({f['grid_cells']:,} cells, "
        f"{f['ambiguous_cells']:,} need exact tests)"
    )
    print(f"  index locate     {f['index_pts_per_s']:>12,} points/s  ({f['index_s']:.3f} s)")
    print(f"  geopandas.sjoin  {f['sjoin_pts_per_s']:>12,} points/s  ({f['sjoin_s']:.3f} s)")
    print(f"  prepared loop    {f['prepared_loop_pts_per_s']:>12,} points/s")
    print(
        f"  route_points     {f['route_pts_per_s']:>12,} points/s  (nearest within "
        f"{f['route_max_distance_m']:g} m: {f['route_nearest']:,} points)"
    )
    print(
        f"  ratio index/sjoin {f['ratio']}x, agreement {f['agreement']:.6f} "
        f"({f['mismatches']} mismatches), bar {'met' if f['meets_bar'] else 'MISSED'}"
    )
    print("bench route: " + " ".join(f"{k}={v}" for k, v in f.items()))
    return 0 if f["meets_bar"] else 1


if __name__ == "__main__":
    sys.exit(main())
