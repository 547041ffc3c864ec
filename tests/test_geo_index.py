"""The jurisdiction index gives exactly geopandas.sjoin's answer, with a fixed rule on borders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box

from ioc.bench.geo import main as bench_main
from ioc.bench.geo import run_route_bench, sjoin_locate, tie_break
from ioc.errors import InvalidInput
from ioc.routing.index import How, JurisdictionIndex

HUE_WARDS = Path(__file__).resolve().parents[2] / "shared/data/vn/hue_wards_2025.geojson"

# Fixtures sit near Huế so the metric projection is the one used in production. Steps are
# powers of two, so the squares' edges and edge midpoints are exact binary fractions: points
# built on them lie exactly on the border, not a rounding error away.
LON0, LAT0, STEP = 107.5, 16.25, 0.0625
SMALL_GRID = 1 << 14  # cells; keeps builds fast and puts many borders in each cell


def _frame(codes: list[str], geoms: list[Polygon | MultiPolygon]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"code": codes, "name": [f"ward {c}" for c in codes]}, geometry=geoms, crs=4326
    )


def squares() -> gpd.GeoDataFrame:
    """4 x 4 squares sharing edges; codes shuffled so code order is not row order."""
    geoms = [
        box(LON0 + i * STEP, LAT0 + j * STEP, LON0 + (i + 1) * STEP, LAT0 + (j + 1) * STEP)
        for j in range(4)
        for i in range(4)
    ]
    codes = [f"{(7 * k + 3) % 16:02d}" for k in range(16)]
    return _frame(codes, geoms)


def irregular(seed: int = 7, m: int = 6) -> gpd.GeoDataFrame:
    """A jittered m x m partition: every edge is a shared, bent polyline (exact shared borders)."""
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-0.25, 0.25, (m + 1, m + 1, 2))
    jitter[[0, -1], :, 1] = 0  # straight outer edges keep the partition a rectangle
    jitter[:, [0, -1], 0] = 0
    node = (np.indices((m + 1, m + 1)).transpose(1, 2, 0)[..., ::-1] + jitter) * STEP
    node += (LON0, LAT0)
    bend = rng.uniform(-0.2, 0.2, (2, m + 1, m + 1)) * STEP

    def mid(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
        d = b - a
        bent: np.ndarray = (a + b) / 2 + k * np.array([-d[1], d[0]]) / np.hypot(d[0], d[1])
        return bent

    def edge(j0: int, i0: int, j1: int, i1: int) -> list[np.ndarray]:
        # The bend is keyed by the edge, so both neighbours get the same middle vertex.
        lo, hi = sorted([(j0, i0), (j1, i1)])
        kind = 0 if lo[0] == hi[0] else 1
        outer = (kind == 0 and lo[0] in (0, m)) or (kind == 1 and lo[1] in (0, m))
        k = 0.0 if outer else bend[kind, lo[0], lo[1]]
        return [node[j0, i0], mid(node[lo], node[hi], k)]

    geoms, codes = [], []
    for j in range(m):
        for i in range(m):
            ring = (
                edge(j, i, j, i + 1)
                + edge(j, i + 1, j + 1, i + 1)
                + edge(j + 1, i + 1, j + 1, i)
                + edge(j + 1, i, j, i)
            )
            geoms.append(Polygon(ring))
            codes.append(f"{(11 * (j * m + i)) % (m * m):03d}")
    return _frame(codes, geoms)


def with_holes() -> gpd.GeoDataFrame:
    """A ring with a hole, an island in the hole, a multipolygon and a piece between its parts."""
    s = STEP

    def sq(x0: float, y0: float, x1: float, y1: float) -> Polygon:
        return box(LON0 + x0 * s, LAT0 + y0 * s, LON0 + x1 * s, LAT0 + y1 * s)

    ring = sq(0, 0, 4, 4).difference(sq(1, 1, 3, 3))
    island = sq(1.5, 1.5, 2.5, 2.5)
    split = MultiPolygon([sq(4, 0, 5, 1), sq(4, 3, 5, 4)])
    between = sq(4, 1, 5, 3)
    corner = sq(3, 3, 4, 4).difference(sq(3, 3, 3.5, 3.5))  # overlaps the ring: tie by code
    return _frame(["40", "20", "30", "10", "05"], [ring, island, split, between, corner])


FIXTURES: dict[str, Callable[[], gpd.GeoDataFrame]] = {
    "squares": squares,
    "irregular": irregular,
    "holes": with_holes,
}


def random_points(frame: gpd.GeoDataFrame, n: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    """Uniform points over the bbox grown by a fifth, so some fall outside every polygon."""
    minx, miny, maxx, maxy = frame.total_bounds
    dx, dy = (maxx - minx) / 10, (maxy - miny) / 10
    rng = np.random.default_rng(seed)
    return rng.uniform(minx - dx, maxx + dx, n), rng.uniform(miny - dy, maxy + dy, n)


def border_points(frame: gpd.GeoDataFrame, n_lines: int = 2000) -> tuple[np.ndarray, ...]:
    """Every vertex, and points exactly on the fixtures' axis-aligned edge lines."""
    xy = shapely.get_coordinates(frame.geometry.values)
    rng = np.random.default_rng(2)
    minx, miny, maxx, maxy = frame.total_bounds
    grid_x = LON0 + STEP * rng.integers(0, 6, n_lines) / 2  # on the half-step lines too
    grid_y = LAT0 + STEP * rng.integers(0, 6, n_lines) / 2
    free_x, free_y = rng.uniform(minx, maxx, n_lines), rng.uniform(miny, maxy, n_lines)
    lon = np.concatenate([xy[:, 0], grid_x, free_x])
    lat = np.concatenate([xy[:, 1], free_y, grid_y])
    return lon, lat


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("max_cells", [64, SMALL_GRID, None])
def test_agrees_with_sjoin_on_random_and_border_points(name: str, max_cells: int | None) -> None:
    frame = FIXTURES[name]()
    index = (
        JurisdictionIndex.from_geodataframe(frame)
        if max_cells is None
        else JurisdictionIndex.from_geodataframe(frame, max_cells=max_cells)
    )
    rx, ry = random_points(frame, 20_000)
    bx, by = border_points(frame)
    lon, lat = np.concatenate([rx, bx]), np.concatenate([ry, by])

    expected = sjoin_locate(frame, lon, lat)
    found = index.locate(lon, lat)

    assert (expected >= 0).any() and (expected < 0).any()
    np.testing.assert_array_equal(found, expected)


def test_shared_corner_goes_to_smallest_code() -> None:
    frame = squares()
    index = JurisdictionIndex.from_geodataframe(frame, max_cells=SMALL_GRID)
    corner = (LON0 + STEP, LAT0 + STEP)  # shared by rows 0, 1, 4 and 5
    touching = frame.iloc[[0, 1, 4, 5]]

    found = index.locate([corner[0]], [corner[1]])

    assert index.codes[found[0]] == min(touching["code"])


def test_overlap_goes_to_smallest_code_not_first_row() -> None:
    frame = _frame(["B", "A"], [box(107.0, 16.0, 107.2, 16.2), box(107.1, 16.1, 107.3, 16.3)])
    index = JurisdictionIndex.from_geodataframe(frame, max_cells=SMALL_GRID)

    found = index.locate([107.15, 107.05, 107.25], [16.15, 16.05, 16.25])

    assert list(index.code_at(found)) == ["A", "B", "A"]


def test_row_order_does_not_change_the_answer() -> None:
    frame = irregular()
    (rx, ry), (bx, by) = random_points(frame, 5000), border_points(frame)
    lon, lat = np.concatenate([rx, bx]), np.concatenate([ry, by])
    shuffled = frame.sample(frac=1.0, random_state=3)

    one = JurisdictionIndex.from_geodataframe(frame, max_cells=SMALL_GRID)
    other = JurisdictionIndex.from_geodataframe(shuffled, max_cells=SMALL_GRID)

    assert list(one.code_at(one.locate(lon, lat))) == list(other.code_at(other.locate(lon, lat)))


def test_outside_and_non_finite_points_are_none() -> None:
    index = JurisdictionIndex.from_geodataframe(squares(), max_cells=SMALL_GRID)
    lon = np.array([0.0, np.nan, np.inf, -np.inf, LON0 + STEP / 2, 200.0])
    lat = np.array([0.0, LAT0, LAT0, LAT0, np.nan, -95.0])

    assert index.locate(lon, lat).tolist() == [-1] * 6
    routed = index.route_points(lon, lat, max_distance_m=1000)
    assert routed.how_labels().tolist() == ["none"] * 6
    assert np.isnan(routed.distance_m).all()


def test_locate_keeps_the_input_shape() -> None:
    frame = squares()
    index = JurisdictionIndex.from_geodataframe(frame, max_cells=SMALL_GRID)
    lon, lat = random_points(frame, 12)

    found = index.locate(lon.reshape(3, 4), lat.reshape(3, 4))

    assert found.shape == (3, 4)
    np.testing.assert_array_equal(found.ravel(), index.locate(lon, lat))


def test_route_points_says_how() -> None:
    frame = squares()
    index = JurisdictionIndex.from_geodataframe(frame, max_cells=SMALL_GRID)
    lon = [LON0 + STEP / 2, LON0 + STEP, LON0 - 0.001, LON0 - 0.5]
    lat = [LAT0 + STEP / 2, LAT0 + STEP / 2, LAT0 + STEP / 2, LAT0]

    routed = index.route_points(lon, lat, max_distance_m=500)

    assert routed.how_labels().tolist() == ["inside", "border", "nearest", "none"]
    assert routed.how.tolist() == [How.INSIDE, How.BORDER, How.NEAREST, How.NONE]
    assert list(index.code_at(routed.index)) == [
        frame.code[0],
        min(frame.code[0], frame.code[1]),
        frame.code[0],
        None,
    ]
    assert routed.distance_m[:2].tolist() == [0.0, 0.0]
    assert 100 < routed.distance_m[2] < 110  # 0.001 degrees of longitude at 16.3° N
    assert np.isnan(routed.distance_m[3])


def test_route_points_without_fallback_leaves_outside_points_alone() -> None:
    index = JurisdictionIndex.from_geodataframe(squares(), max_cells=SMALL_GRID)

    routed = index.route_points([LON0 - 0.001], [LAT0 + 0.01])

    assert routed.index.tolist() == [-1]
    assert routed.how_labels().tolist() == ["none"]


@pytest.mark.parametrize("name", FIXTURES)
def test_nearest_distance_matches_geopandas_in_metres(name: str) -> None:
    frame = FIXTURES[name]()
    index = JurisdictionIndex.from_geodataframe(frame, max_cells=SMALL_GRID)
    lon, lat = random_points(frame, 3000, seed=5)
    outside = index.locate(lon, lat) < 0
    lon, lat = lon[outside], lat[outside]

    found, dist = index.nearest(lon, lat, max_distance_m=2000)

    metric = frame.to_crs(index.metric_crs)
    points = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs=4326).to_crs(index.metric_crs)
    # To the boundary: with the fixtures' 27 km straight edges, a point just outside a polygon
    # in lon/lat can be a metre inside it once projected (edges bend), and the index measures
    # from the boundary for every point that is outside in lon/lat.
    every = np.stack([points.distance(geom.boundary).to_numpy() for geom in metric.geometry])
    closest = every.min(axis=0)
    near = closest <= 2000
    assert near.any() and (~near).any()
    np.testing.assert_allclose(dist[near], closest[near], rtol=0, atol=1e-6)
    chosen = every[found[near], np.flatnonzero(near)]
    np.testing.assert_allclose(chosen, closest[near], rtol=0, atol=1e-6)
    assert (found[~near] == -1).all() and np.isnan(dist[~near]).all()


@pytest.mark.parametrize("codes", [["7", "3"], ["3", "7"]])
def test_nearest_tie_goes_to_smallest_code(codes: list[str]) -> None:
    # Two triangles share the vertical edge up from V. Straight below V, V is the nearest point
    # of both (with a wide margin for the projection's grid convergence), so the distances are
    # the same number and the tie rule decides.
    vx, vy = LON0 + STEP, LAT0
    left = Polygon([(vx, vy), (vx - STEP, vy + STEP / 2), (vx, vy + STEP)])
    right = Polygon([(vx, vy), (vx, vy + STEP), (vx + STEP, vy + STEP / 2)])
    index = JurisdictionIndex.from_geodataframe(_frame(codes, [left, right]), max_cells=256)

    found, dist = index.nearest([vx], [vy - 0.001], max_distance_m=1000)

    assert index.codes[found[0]] == "3"
    assert 100 < dist[0] < 120


def test_nearest_of_a_covered_point_is_its_jurisdiction() -> None:
    frame = irregular()
    index = JurisdictionIndex.from_geodataframe(frame, max_cells=SMALL_GRID)
    lon, lat = border_points(frame)

    found, dist = index.nearest(lon, lat, max_distance_m=1)

    covered = index.locate(lon, lat)
    np.testing.assert_array_equal(found[covered >= 0], covered[covered >= 0])
    assert (dist[covered >= 0] == 0).all()


def test_point_in_a_hole_routes_to_the_nearest_rim() -> None:
    index = JurisdictionIndex.from_geodataframe(with_holes(), max_cells=SMALL_GRID)
    # In the hole, between its rim (at x = 1 step) and the island (from x = 1.5 steps).
    lon, lat = [LON0 + 1.125 * STEP], [LAT0 + 2 * STEP]

    routed = index.route_points(lon, lat, max_distance_m=5000)

    assert list(index.code_at(routed.index)) == ["40"]
    assert routed.how_labels().tolist() == ["nearest"]


def test_from_geodataframe_reprojects_to_lon_lat() -> None:
    frame = irregular()
    lon, lat = random_points(frame, 5000)
    plain = JurisdictionIndex.from_geodataframe(frame, max_cells=SMALL_GRID)
    projected = JurisdictionIndex.from_geodataframe(frame.to_crs(3857), max_cells=SMALL_GRID)

    agree = plain.locate(lon, lat) == projected.locate(lon, lat)

    assert agree.mean() > 0.999  # a round trip through Web Mercator moves vertices by ~1e-9°


def test_constructor_takes_plain_lists_and_levels() -> None:
    frame = squares()
    index = JurisdictionIndex(
        list(frame.code), list(frame.name), "commune", list(frame.geometry), max_cells=256
    )

    assert len(index) == 16 and index.levels == ("commune",) * 16
    assert index.locate([LON0 + STEP / 2], [LAT0 + STEP / 2]).tolist() == [0]


def test_caller_geometries_are_not_prepared() -> None:
    frame = squares()
    JurisdictionIndex.from_geodataframe(frame, max_cells=256)

    assert not shapely.is_prepared(frame.geometry.values).any()


@pytest.mark.parametrize(
    ("codes", "geoms", "message"),
    [
        (["a", "a"], [box(0, 0, 1, 1), box(1, 0, 2, 1)], '"a" appears more than once'),
        (["a"], [Point(0, 0)], "is a Point, must be a Polygon or MultiPolygon"),
        (["a"], [Polygon()], "geometry is empty"),
        (["a"], [Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])], "geometry is invalid"),
        (["a"], [None], "not a shape"),
        ([], [], "at least one jurisdiction"),
    ],
)
def test_bad_jurisdictions_are_refused(codes: list[str], geoms: list[object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        JurisdictionIndex(codes, codes, "ward", geoms)


def test_a_lone_geometry_is_refused() -> None:
    with pytest.raises(InvalidInput, match="one entry per jurisdiction"):
        JurisdictionIndex(["a"], ["a"], "ward", box(0, 0, 1, 1))


def test_metric_crs_must_be_projected_in_metres() -> None:
    with pytest.raises(InvalidInput, match="must be a projected CRS in metres"):
        JurisdictionIndex.from_geodataframe(squares(), max_cells=256, metric_crs=4326)


def test_vn2000_metric_crs_gives_nearly_the_same_distances() -> None:
    frame = squares()
    utm = JurisdictionIndex.from_geodataframe(frame, max_cells=256)
    vn2000 = JurisdictionIndex.from_geodataframe(frame, max_cells=256, metric_crs="EPSG:3405")
    lon, lat = [LON0 - 0.002, LON0 + STEP * 2], [LAT0 + STEP, LAT0 + STEP * 4 + 0.003]

    a, da = utm.nearest(lon, lat, max_distance_m=1000)
    b, db = vn2000.nearest(lon, lat, max_distance_m=1000)

    assert utm.metric_crs.to_epsg() == 32648
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(da, db, rtol=2e-3)


def test_missing_column_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"\['ma'\] not in the jurisdiction table"):
        JurisdictionIndex.from_geodataframe(squares(), code_field="ma")


def test_mismatched_lon_lat_are_refused() -> None:
    index = JurisdictionIndex.from_geodataframe(squares(), max_cells=256)
    with pytest.raises(InvalidInput, match=r"lon has shape \(2,\) and lat \(3,\)"):
        index.locate([1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf")])
def test_nearest_needs_a_positive_distance(bad: float) -> None:
    index = JurisdictionIndex.from_geodataframe(squares(), max_cells=256)
    with pytest.raises(InvalidInput, match="max_distance_m is"):
        index.nearest([LON0], [LAT0], max_distance_m=bad)


def test_bench_agrees_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wards.geojson"
    irregular().to_file(path, driver="GeoJSON")

    figures = run_route_bench(path, n_points=20_000, seed=4, max_cells=SMALL_GRID)
    bench_main([str(path), "--points", "5000", "--max-cells", str(SMALL_GRID)])

    assert figures["agreement"] == 1.0 and figures["mismatches"] == 0
    assert float(figures["index_pts_per_s"]) > 0 and float(figures["sjoin_pts_per_s"]) > 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("bench route: ") and " agreement=1.0 " in last


@pytest.mark.skipif(not HUE_WARDS.exists(), reason="Huế ward boundaries not present")
def test_hue_wards_agree_with_geopandas() -> None:
    frame = gpd.read_file(HUE_WARDS)
    index = JurisdictionIndex.from_geodataframe(frame)
    rng = np.random.default_rng(11)
    minx, miny, maxx, maxy = frame.total_bounds
    vertices = shapely.get_coordinates(frame.geometry.values)
    picked = vertices[rng.choice(len(vertices), 10_000, replace=False)]
    lon = np.concatenate([rng.uniform(minx, maxx, 30_000), picked[:, 0]])
    lat = np.concatenate([rng.uniform(miny, maxy, 30_000), picked[:, 1]])

    np.testing.assert_array_equal(index.locate(lon, lat), sjoin_locate(frame, lon, lat))

    # The nearest fallback against geopandas.sjoin_nearest in the same metric projection.
    routed = index.route_points(lon[:20_000], lat[:20_000], max_distance_m=500)
    outside = np.flatnonzero(index.locate(lon[:20_000], lat[:20_000]) < 0)
    points = gpd.GeoDataFrame(
        geometry=gpd.points_from_xy(lon[outside], lat[outside]), crs=4326
    ).to_crs(index.metric_crs)
    metric = frame[["code", "geometry"]].to_crs(index.metric_crs)
    joined = gpd.sjoin_nearest(points, metric, max_distance=500, distance_col="d")
    expected = tie_break(
        joined.index.to_numpy(), joined["index_right"].to_numpy(), frame, "code", len(outside)
    )
    np.testing.assert_array_equal(routed.index[outside], expected)
    found = expected >= 0
    assert found.sum() > 100 and (routed.how[outside[found]] == How.NEAREST).all()
    distance = joined.groupby(level=0)["d"].min().reindex(range(len(outside))).to_numpy()
    np.testing.assert_allclose(routed.distance_m[outside], distance, rtol=0, atol=1e-6)
