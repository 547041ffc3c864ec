"""Boundary files are read, checked, repaired and stored as versioned sets; bad files change
nothing. Fixtures are generated near Huế; the real Huế files are used when they are present."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import geopandas as gpd
import psycopg
import pytest
import shapely
from click.testing import CliRunner, Result
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from ioc.cli.jurisdictions import jurisdictions
from ioc.errors import InvalidInput
from ioc.routing.jurisdictions import BoundaryFile, BoundarySet, in_force, read_boundary_file
from ioc.store.jurisdictions import StoredSet, load_boundary_sets, save_boundary_set

T = TypeVar("T")

DATA = Path(__file__).resolve().parents[2] / "shared/data/vn"
HUE_WARDS = DATA / "hue_wards_2025.geojson"
HUE_DISTRICTS = DATA / "hue_districts_pre2025.geojson"

# Squares near Huế, so projected CRSs for Vietnam (VN-2000, UTM 48N) are meaningful.
LON0, LAT0, STEP = 107.5, 16.25, 0.0625
WARDS_2025 = date(2025, 7, 1)
DISTRICTS_2008 = date(2008, 1, 1)


def square(i: int, j: int = 0) -> Polygon:
    return box(LON0 + i * STEP, LAT0 + j * STEP, LON0 + (i + 1) * STEP, LAT0 + (j + 1) * STEP)


def frame(
    codes: list[Any], geoms: list[BaseGeometry | None], crs: Any = 4326, **columns: list[Any]
) -> gpd.GeoDataFrame:
    data = {"code": codes, "name": [f"Phường {c}" for c in codes], **columns}
    return gpd.GeoDataFrame(data, geometry=geoms, crs=crs)


def wards(n: int = 3, prefix: str = "197", parent: bool = True) -> gpd.GeoDataFrame:
    codes = [f"{prefix}{k:02d}" for k in range(n)]
    # Shapefile field names stop at 10 characters: those fixtures go without province_code.
    parents = {"province_code": ["46"] * n} if parent else {}
    return frame(codes, [square(k) for k in range(n)], **parents)


def write(gdf: gpd.GeoDataFrame, path: Path, **options: Any) -> Path:
    with warnings.catch_warnings():
        # pyogrio warns when it writes a file without a CRS, which some fixtures mean to do.
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        gdf.to_file(path, engine="pyogrio", **options)
    return path


def run(db_url: str, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    async def go() -> T:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            return await work(conn)

    return asyncio.run(go())


def store(db_url: str, read: BoundaryFile) -> StoredSet | None:
    return run(db_url, lambda conn: save_boundary_set(conn, read.boundaries, read.source_name))


def import_file(db_url: str, path: Path, level: str, day: date, **options: Any) -> BoundaryFile:
    read = read_boundary_file(path, level, day, **options)
    store(db_url, read)
    return read


def snapshot(db_url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Everything the import writes, to show that a refused import changed nothing."""
    with psycopg.connect(db_url) as conn:
        sets = conn.execute(
            "SELECT id, level, effective_from, source_name, feature_count, imported_at"
            " FROM boundary_sets ORDER BY id"
        ).fetchall()
        rows = conn.execute(
            "SELECT set_id, level, code, name, parent_code, geometry, min_lon, min_lat,"
            " max_lon, max_lat FROM jurisdictions ORDER BY set_id, code"
        ).fetchall()
    return sets, rows


def stored_rows(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT s.level, s.effective_from, j.code, j.name, j.parent_code, j.geometry,"
            " j.min_lon, j.min_lat, j.max_lon, j.max_lat"
            " FROM jurisdictions j JOIN boundary_sets s ON s.id = j.set_id ORDER BY j.code"
        ).fetchall()


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    """Run ``ioc jurisdictions ...`` in-process against the test database."""
    monkeypatch.setenv("IOC_DATABASE_URL", db_url)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the CLI configures logging for itself

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(jurisdictions, list(args))

    yield invoke
    root.handlers[:] = handlers
    root.setLevel(level)


# --- reading and storing -------------------------------------------------------------------


def test_geojson_features_are_stored_with_wkb_and_bbox(db_url: str, tmp_path: Path) -> None:
    source = wards(3)
    path = write(source, tmp_path / "hue_wards.geojson")
    import_file(db_url, path, "ward", WARDS_2025, parent_field="province_code")

    sets, _ = snapshot(db_url)
    assert [s[1:5] for s in sets] == [("ward", WARDS_2025, "hue_wards.geojson", 3)]
    rows = stored_rows(db_url)
    assert [r[2:5] for r in rows] == [(c, f"Phường {c}", "46") for c in source["code"]]
    for row, geom in zip(rows, source.geometry, strict=True):
        stored = shapely.from_wkb(row[5])
        assert stored.equals(geom)
        assert row[6:10] == pytest.approx(geom.bounds)


def test_parent_code_is_null_without_a_parent_field(db_url: str, tmp_path: Path) -> None:
    import_file(db_url, write(wards(2), tmp_path / "w.geojson"), "ward", WARDS_2025)
    assert [r[4] for r in stored_rows(db_url)] == [None, None]


def test_geopackage_layer_is_chosen_by_name(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "boundaries.gpkg"
    write(wards(3), path, layer="wards")
    write(wards(2, prefix="47"), path, layer="districts")
    import_file(db_url, path, "district", DISTRICTS_2008, layer="districts")
    assert [r[:3] for r in stored_rows(db_url)] == [
        ("district", DISTRICTS_2008, "4700"),
        ("district", DISTRICTS_2008, "4701"),
    ]


def test_shapefile_numeric_codes_become_text(db_url: str, tmp_path: Path) -> None:
    source = frame([474, 476], [square(0), square(1)])
    import_file(db_url, write(source, tmp_path / "districts.shp"), "district", DISTRICTS_2008)
    assert [r[2] for r in stored_rows(db_url)] == ["474", "476"]


@pytest.mark.parametrize("epsg", [3405, 32648], ids=["VN-2000 UTM 48N", "WGS 84 UTM 48N"])
def test_projected_file_is_reprojected_to_lon_lat(db_url: str, tmp_path: Path, epsg: int) -> None:
    source = wards(3)
    path = write(source.to_crs(epsg), tmp_path / f"wards_{epsg}.gpkg")
    read = import_file(db_url, path, "ward", WARDS_2025)

    assert read.reprojected_from is not None and str(epsg) in read.reprojected_from
    assert not read.crs_assumed
    for row, geom in zip(stored_rows(db_url), source.geometry, strict=True):
        assert shapely.hausdorff_distance(shapely.from_wkb(row[5]), geom) < 1e-7
        assert row[6:10] == pytest.approx(geom.bounds, abs=1e-7)


def test_file_without_crs_is_assumed_lon_lat_with_a_warning(db_url: str, tmp_path: Path) -> None:
    source = wards(2, parent=False).set_crs(None, allow_override=True)
    read = import_file(db_url, write(source, tmp_path / "no_prj.shp"), "ward", WARDS_2025)

    assert read.crs_assumed and read.reprojected_from is None
    assert read.warnings() == ["no_prj.shp: no CRS in the file; assumed EPSG:4326 (lon/lat)"]
    assert shapely.from_wkb(stored_rows(db_url)[0][5]).equals(source.geometry[0])


def test_self_intersecting_polygon_is_repaired_and_reported(db_url: str, tmp_path: Path) -> None:
    x0, y0, x1, y1 = square(1).bounds
    bow_tie = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])
    source = frame(["19700", "19701"], [square(0), bow_tie])
    read = import_file(db_url, write(source, tmp_path / "bow_tie.geojson"), "ward", WARDS_2025)

    assert [(r.feature, r.code) for r in read.repairs] == [(2, "19701")]
    assert read.repairs[0].reason.startswith("Self-intersection")
    (warning,) = read.warnings()
    assert 'feature 2 (code "19701")' in warning and "Self-intersection" in warning
    stored = shapely.from_wkb(stored_rows(db_url)[1][5])
    assert stored.is_valid and isinstance(stored, MultiPolygon)
    assert stored.area == pytest.approx(square(1).area / 2)  # the two triangles of the bow tie
    # The repaired set is one the routing index accepts.
    (loaded,) = run(db_url, load_boundary_sets)
    left_triangle = (x0 + STEP / 8, (y0 + y1) / 2)
    assert loaded.index().locate([left_triangle[0]], [left_triangle[1]]).tolist() == [1]


def test_non_polygon_features_are_skipped_and_reported(db_url: str, tmp_path: Path) -> None:
    geoms = [square(0), Point(LON0, LAT0), square(1), LineString([(LON0, LAT0), (LON0 + 1, LAT0)])]
    source = frame(["19700", "label", "19701", "road"], geoms)
    read = import_file(db_url, write(source, tmp_path / "mixed.gpkg"), "ward", WARDS_2025)

    assert [(s.feature, s.code) for s in read.skips] == [(2, "label"), (4, "road")]
    assert read.warnings() == [
        'mixed.gpkg: feature 2 (code "label"): skipped: a Point, not a Polygon or MultiPolygon',
        'mixed.gpkg: feature 4 (code "road"): skipped: a LineString, not a Polygon or MultiPolygon',
    ]
    assert [r[2] for r in stored_rows(db_url)] == ["19700", "19701"]
    assert snapshot(db_url)[0][0][4] == 2  # feature_count counts what was stored


def test_features_without_geometry_are_skipped(tmp_path: Path) -> None:
    source = frame(["19700", "19701"], [square(0), None])
    read = read_boundary_file(write(source, tmp_path / "gap.geojson"), "ward", WARDS_2025)
    assert [(s.feature, s.reason) for s in read.skips] == [(2, "no geometry")]
    assert read.boundaries.codes == ("19700",)


# --- refused files change nothing ----------------------------------------------------------


def _points_only(tmp_path: Path) -> Path:
    return write(frame(["a", "b"], [Point(LON0, LAT0), Point(LON0, LAT0 + 1)]), tmp_path / "f.gpkg")


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "f.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    return path


BAD_FILES: dict[str, tuple[Callable[[Path], Path], list[str], list[str]]] = {
    # case: (make the file, extra CLI options, fragments the error must contain)
    "missing name field": (
        lambda p: write(wards(2).rename(columns={"name": "ten"}), p / "f.geojson"),
        [],
        ['f.geojson: no field "name" (--name-field)', "the fields are: code, ten, province_code"],
    ),
    "missing parent field": (
        lambda p: write(wards(2), p / "f.geojson"),
        ["--parent-field", "tinh"],
        ['no field "tinh" (--parent-field)', "province_code"],
    ),
    "duplicate code": (
        lambda p: write(frame(["1", "2", "1"], [square(0), square(1), square(2)]), p / "f.shp"),
        [],
        ['f.shp: code "1" is used by features 1 and 3', "must be unique"],
    ),
    "empty code": (
        lambda p: write(frame(["1", " ", "3"], [square(0), square(1), square(2)]), p / "f.gpkg"),
        [],
        ['f.gpkg: feature 2: field "code" is empty', "--code-field"],
    ),
    "missing name": (
        lambda p: write(
            frame(["1", "2"], [square(0), square(1)]).assign(name=["A", None]), p / "f.gpkg"
        ),
        [],
        ['f.gpkg: feature 2: field "name" is empty', "--name-field"],
    ),
    "no features": (
        lambda p: write(wards(0), p / "f.gpkg"),
        [],
        ["f.gpkg: no features", "Polygon or MultiPolygon"],
    ),
    "no polygons": (
        _points_only,
        [],
        ["f.gpkg: no usable polygons among 2 features", 'feature 1 (code "a"): a Point'],
    ),
    "not a vector file": (_garbage, [], ["f.geojson: cannot read it", "GeoJSON, GeoPackage"]),
    "no such file": (lambda p: p / "nothing.geojson", [], ["nothing.geojson: no such file"]),
    "ambiguous layer": (
        lambda p: write(wards(2), write(wards(2), p / "f.gpkg", layer="a"), layer="b"),
        [],
        ["f.gpkg: has 2 layers (a, b); choose one with --layer"],
    ),
    "unknown layer": (
        lambda p: write(wards(2), p / "f.gpkg", layer="wards"),
        ["--layer", "phuong"],
        ['f.gpkg: no layer "phuong"; its layers are: wards'],
    ),
    "metres without a CRS": (
        lambda p: write(
            wards(2, parent=False).to_crs(3405).set_crs(None, allow_override=True), p / "f.shp"
        ),
        [],
        ["f.shp: coordinates span", "the file has no CRS", "not longitudes and latitudes"],
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_refused_file_names_the_problem_and_changes_nothing(
    db_url: str, tmp_path: Path, cli: Callable[..., Result], case: str
) -> None:
    make, options, fragments = BAD_FILES[case]
    existing = write(wards(3, prefix="999"), tmp_path / "existing.geojson")
    # The same level and date as the refused import: a replace that must not happen.
    import_file(db_url, existing, "ward", WARDS_2025, parent_field="province_code")
    before = snapshot(db_url)
    bad = make(tmp_path)

    result = cli("import", str(bad), "--level", "ward", "--effective-from", "2025-07-01", *options)

    assert result.exit_code == 1, result.output
    for fragment in fragments:
        assert fragment in result.stderr
    assert "imported" not in result.stdout
    assert snapshot(db_url) == before


def test_refused_file_raises_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match='no field "name"'):
        read_boundary_file(
            write(wards(1).drop(columns="name"), tmp_path / "f.geojson"), "ward", WARDS_2025
        )


def test_a_failed_save_keeps_the_old_set(db_url: str, tmp_path: Path) -> None:
    import_file(db_url, write(wards(3), tmp_path / "w.geojson"), "ward", WARDS_2025)
    before = snapshot(db_url)
    # PostgreSQL text cannot hold NUL: the last row fails after the old rows were deleted.
    broken = BoundarySet(
        "ward", WARDS_2025, ("1", "2\x00"), ("A", "B"), (None, None), (square(0), square(1))
    )
    with pytest.raises(psycopg.DataError):
        run(db_url, lambda conn: save_boundary_set(conn, broken, "broken.geojson"))
    assert snapshot(db_url) == before


def test_an_empty_set_is_not_saved(db_url: str) -> None:
    empty = BoundarySet("ward", WARDS_2025, (), (), (), ())
    with pytest.raises(InvalidInput, match="has no jurisdictions"):
        run(db_url, lambda conn: save_boundary_set(conn, empty, "empty.geojson"))
    assert snapshot(db_url) == ([], [])


# --- versions ------------------------------------------------------------------------------


def test_reimport_replaces_the_set_whole(db_url: str, tmp_path: Path) -> None:
    first = import_file(db_url, write(wards(3), tmp_path / "v1.geojson"), "ward", WARDS_2025)
    second = read_boundary_file(
        write(wards(2, prefix="198"), tmp_path / "v2.geojson"), "ward", WARDS_2025
    )
    replaced = store(db_url, second)

    assert replaced is not None
    assert (replaced.source_name, replaced.feature_count) == (first.source_name, 3)
    sets, rows = snapshot(db_url)
    assert [s[1:5] for s in sets] == [("ward", WARDS_2025, "v2.geojson", 2)]
    assert [r[2] for r in rows] == ["19800", "19801"]


def test_reimporting_the_same_file_is_safe(db_url: str, tmp_path: Path) -> None:
    path = write(wards(3), tmp_path / "w.geojson")
    import_file(db_url, path, "ward", WARDS_2025)
    _, rows = snapshot(db_url)
    import_file(db_url, path, "ward", WARDS_2025)
    sets, again = snapshot(db_url)
    assert len(sets) == 1
    assert [r[2:] for r in again] == [r[2:] for r in rows]


def _two_versions(db_url: str, tmp_path: Path) -> list[BoundarySet]:
    districts = frame(["474", "476"], [box(LON0, LAT0, LON0 + 2 * STEP, LAT0 + STEP), square(2)])
    import_file(db_url, write(districts, tmp_path / "d.geojson"), "district", DISTRICTS_2008)
    import_file(db_url, write(wards(3), tmp_path / "w.geojson"), "ward", WARDS_2025)
    return run(db_url, load_boundary_sets)


def test_versions_with_other_dates_coexist(db_url: str, tmp_path: Path) -> None:
    sets = _two_versions(db_url, tmp_path)
    assert [(s.level, s.effective_from, s.codes) for s in sets] == [
        ("district", DISTRICTS_2008, ("474", "476")),
        ("ward", WARDS_2025, ("19700", "19701", "19702")),
    ]
    wards_set = sets[1]
    assert wards_set.names[0] == "Phường 19700" and wards_set.parent_codes == (None,) * 3
    assert all(g.equals(square(k)) for k, g in enumerate(wards_set.geometries))


VN = timezone(timedelta(hours=7))


@pytest.mark.parametrize(
    ("level", "when", "expected"),
    [
        ("district", datetime(2024, 6, 1, 12, tzinfo=VN), DISTRICTS_2008),
        ("district", datetime(2026, 1, 1, tzinfo=VN), DISTRICTS_2008),
        ("district", datetime(2007, 12, 31, 23, 59, tzinfo=VN), None),
        ("ward", datetime(2024, 6, 1, tzinfo=VN), None),
        ("ward", datetime(2026, 1, 1, tzinfo=VN), WARDS_2025),
        # Midnight on 1 July in Vietnam is 17:00 UTC on 30 June: the date is Vietnam's.
        ("ward", datetime(2025, 6, 30, 17, 0, tzinfo=UTC), WARDS_2025),
        ("ward", datetime(2025, 6, 30, 16, 59, 59, tzinfo=UTC), None),
        ("ward", datetime(2025, 7, 1, 0, 0), WARDS_2025),  # naive: Vietnamese local time
        ("province", datetime(2026, 1, 1, tzinfo=VN), None),
    ],
)
def test_in_force_picks_the_latest_set_on_or_before_the_day(
    db_url: str, tmp_path: Path, level: str, when: datetime, expected: date | None
) -> None:
    chosen = in_force(_two_versions(db_url, tmp_path), level, when)
    assert (chosen.effective_from if chosen else None) == expected


def test_in_force_prefers_the_newer_of_two_versions() -> None:
    def version(day: date) -> BoundarySet:
        return BoundarySet("ward", day, ("1",), ("A",), (None,), (square(0),))

    sets = [version(date(2025, 7, 1)), version(date(2020, 1, 1)), version(date(2026, 3, 1))]
    chosen = in_force(sets, "ward", datetime(2025, 12, 31, tzinfo=VN))
    assert chosen is sets[0]


def test_loaded_set_index_routes_points_and_is_built_once(db_url: str, tmp_path: Path) -> None:
    _, ward_set = _two_versions(db_url, tmp_path)
    index = ward_set.index()
    assert ward_set.index() is index
    centres = [square(k).centroid for k in (2, 0)]
    found = index.locate([c.x for c in centres], [c.y for c in centres])
    assert [ward_set.codes[i] for i in found] == ["19702", "19700"]


def test_boundary_set_refuses_mismatched_columns() -> None:
    with pytest.raises(InvalidInput, match="one entry per jurisdiction"):
        BoundarySet("ward", WARDS_2025, ("1", "2"), ("A",), (None, None), (square(0), square(1)))
    with pytest.raises(InvalidInput, match='level is "county"'):
        BoundarySet("county", WARDS_2025, ("1",), ("A",), (None,), (square(0),))


# --- command line --------------------------------------------------------------------------


def test_cli_import_prints_a_summary_and_warnings(
    db_url: str, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    x0, y0, x1, y1 = square(1).bounds
    bow_tie = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])
    source = frame(["19700", "19701", "pin"], [square(0), bow_tie, Point(LON0, LAT0)])
    path = write(source.to_crs(32648), tmp_path / "hue_wards_2025.gpkg")

    result = cli("import", str(path), "--level", "ward", "--effective-from", "2025-07-01")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "imported 2 ward jurisdictions effective 2025-07-01 from hue_wards_2025.gpkg\n"
    )
    assert "reprojected from EPSG:32648 to EPSG:4326" in result.stderr
    assert 'warning: hue_wards_2025.gpkg: feature 2 (code "19701"): invalid geometry' in (
        result.stderr
    )
    assert 'warning: hue_wards_2025.gpkg: feature 3 (code "pin"): skipped: a Point' in (
        result.stderr
    )
    assert [r[2] for r in stored_rows(db_url)] == ["19700", "19701"]


def test_cli_reimport_says_what_it_replaced(tmp_path: Path, cli: Callable[..., Result]) -> None:
    path = write(wards(3), tmp_path / "w.geojson")
    args = ["import", str(path), "--level", "ward", "--effective-from", "2025-07-01"]
    assert cli(*args).exit_code == 0
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert "replaced the earlier set: 3 jurisdictions from w.geojson" in again.stdout


def test_cli_list_shows_each_set(tmp_path: Path, cli: Callable[..., Result]) -> None:
    assert "no boundary sets" in cli("list").stderr
    districts = write(frame(["474"], [square(0)]), tmp_path / "districts_pre2025.geojson")
    wards_file = write(wards(2), tmp_path / "wards_2025.geojson")
    cli("import", str(wards_file), "--level", "ward", "--effective-from", "2025-07-01")
    cli("import", str(districts), "--level", "district", "--effective-from", "2008-01-01")

    result = cli("list")

    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["level", "effective_from", "count", "source", "imported_at"]
    assert [line.split()[:4] for line in lines] == [
        ["district", "2008-01-01", "1", "districts_pre2025.geojson"],
        ["ward", "2025-07-01", "2", "wards_2025.geojson"],
    ]
    assert all(datetime.fromisoformat(line.split()[4]) for line in lines)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--level", "county", "--effective-from", "2025-07-01"], "'county' is not one of"),
        (["--level", "ward", "--effective-from", "1/7/2025"], "'1/7/2025' does not match"),
        (["--level", "ward"], "Missing option '--effective-from'"),
    ],
)
def test_cli_refuses_bad_options(
    tmp_path: Path, cli: Callable[..., Result], options: list[str], fragment: str
) -> None:
    path = write(wards(1), tmp_path / "w.geojson")
    result = cli("import", str(path), *options)
    assert result.exit_code == 2
    assert fragment in result.stderr


# --- the real Huế boundaries ---------------------------------------------------------------


@pytest.mark.skipif(
    not (HUE_WARDS.exists() and HUE_DISTRICTS.exists()), reason="../shared/data is absent"
)
def test_real_hue_wards_and_districts(db_url: str) -> None:
    wards_read = import_file(db_url, HUE_WARDS, "ward", WARDS_2025, parent_field="province_code")
    districts_read = import_file(
        db_url, HUE_DISTRICTS, "district", DISTRICTS_2008, parent_field="province_code"
    )
    assert wards_read.warnings() == districts_read.warnings() == []

    sets = run(db_url, load_boundary_sets)
    assert [(s.level, len(s)) for s in sets] == [("district", 9), ("ward", 40)]
    assert set(sets[1].parent_codes) == {"46"}
    district_2024 = in_force(sets, "district", datetime(2024, 6, 1, tzinfo=VN))
    ward_2026 = in_force(sets, "ward", datetime(2026, 1, 1, tzinfo=VN))
    assert district_2024 is sets[0] and ward_2026 is sets[1]
    assert in_force(sets, "ward", datetime(2024, 6, 1, tzinfo=VN)) is None
    # Huế's citadel (Đại Nội) lies in ward Phú Xuân since 2025, in the old Huế city before.
    citadel = ([107.5780], [16.4700])
    assert sets[1].names[sets[1].index().locate(*citadel)[0]] == "Phường Phú Xuân"
    assert sets[0].names[sets[0].index().locate(*citadel)[0]] == "Thành phố Huế"
