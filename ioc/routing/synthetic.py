"""A generated stand-in for real boundaries: Voronoi cells over a bounding box.

Used by the demo and the benchmarks when the real boundary files are not at hand, so that
both run on a fresh machine. The real files are preferred wherever they exist.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

HUE_BBOX = (107.40, 16.30, 107.75, 16.60)
# Where the shared real data sits beside a checkout of the project, when it does.
SHARED_VN = Path(__file__).resolve().parents[3] / "shared" / "data" / "vn"


def voronoi_wards(
    count: int = 40, bbox: tuple[float, float, float, float] = HUE_BBOX, seed: int = 2025
) -> gpd.GeoDataFrame:
    """``count`` ward-like cells tiling ``bbox`` exactly, with codes and Vietnamese names."""
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = bbox
    seeds = shapely.points(rng.uniform(minx, maxx, count), rng.uniform(miny, maxy, count))
    frame = shapely.box(*bbox)
    cells = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=frame)
    parts = [shapely.intersection(cell, frame) for cell in shapely.get_parts(cells)]
    return gpd.GeoDataFrame(
        {
            "code": [f"SIM{n:03d}" for n in range(1, len(parts) + 1)],
            "name": [f"Phường mô phỏng {n}" for n in range(1, len(parts) + 1)],
            "province_code": ["46"] * len(parts),
        },
        geometry=parts,
        crs="EPSG:4326",
    )


def hue_wards_file(workdir: Path) -> tuple[Path, bool]:
    """(path to Huế's 2025 wards, True) when the real file is here, else a generated one."""
    real = SHARED_VN / "hue_wards_2025.geojson"
    if real.exists():
        return real, True
    path = workdir / "generated_wards.geojson"
    voronoi_wards().to_file(path, driver="GeoJSON")
    return path, False
