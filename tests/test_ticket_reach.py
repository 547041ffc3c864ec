"""The cells looked at for open tickets near a new report: every cell a ticket within the
distance can lie in, and few others."""

from __future__ import annotations

import math
import random

import pytest

from ioc.tickets.reach import M_PER_DEG_LAT, M_PER_DEG_LON_EQ, Reach, cell, metres


def _toward(lon: float, lat: float, bearing: float, distance_m: float) -> tuple[float, float]:
    """A point about ``distance_m`` from (lon, lat) along ``bearing``, then moved along the
    same line (by halving) to the last one ``metres`` still puts within the distance."""
    near, far = 0.0, 2.0
    for _ in range(60):
        mid = (near + far) / 2
        d = distance_m * mid
        p_lat = lat + d * math.cos(bearing) / M_PER_DEG_LAT
        p_lon = lon + d * math.sin(bearing) / (M_PER_DEG_LON_EQ * math.cos(math.radians(lat)))
        if metres(lon, lat, p_lon, p_lat) <= distance_m:
            near = mid
        else:
            far = mid
    d = distance_m * near
    return (
        lon + d * math.sin(bearing) / (M_PER_DEG_LON_EQ * math.cos(math.radians(lat))),
        lat + d * math.cos(bearing) / M_PER_DEG_LAT,
    )


def _cells(reach: Reach, lon: float, lat: float) -> list[tuple[int, int]]:
    return [(x, y) for x, low, high in reach.columns(lon, lat) for y in range(low, high + 1)]


@pytest.mark.parametrize("distance_m", [50.0, 12.5, 300.0])
def test_every_point_within_the_distance_lies_in_a_cell_within_reach(distance_m: float) -> None:
    reach = Reach(distance_m)
    rng = random.Random(7)
    places = [(107.58, 16.46), (105.85, 21.03), (106.70, 10.78), (0.0, 0.0), (-70.3, -53.1)]
    for n in range(6000):
        if n < len(places) * 400:  # Huế, Hà Nội, Thành phố Hồ Chí Minh, and elsewhere
            lon, lat = places[n % len(places)]
            lon += rng.uniform(-0.05, 0.05)
            lat += rng.uniform(-0.05, 0.05)
        else:
            lon, lat = rng.uniform(-180, 180), rng.uniform(-75, 75)
        cells = set(_cells(reach, lon, lat))
        bearing = rng.uniform(0, 2 * math.pi)
        # On the edge of the reach (the hardest case), and anywhere inside it.
        for scale in (1.0, rng.random()):
            p_lon, p_lat = _toward(lon, lat, bearing, distance_m * scale)
            assert metres(lon, lat, p_lon, p_lat) <= distance_m
            assert cell(p_lon, p_lat) in cells, (lon, lat, p_lon, p_lat)


def test_a_point_on_a_cell_edge_reaches_its_own_cell_and_the_neighbours() -> None:
    reach = Reach(50.0)
    for lon, lat in ((107.5, 16.5), (107.58, 16.46), (107.5999999, 16.4000001)):
        assert cell(lon, lat) in _cells(reach, lon, lat)
    # On the corner of four cells, all four are within reach.
    assert set(_cells(reach, 107.5, 16.5)) >= {
        (107499, 16499),
        (107500, 16499),
        (107499, 16500),
        (107500, 16500),
    }


def test_in_hue_a_report_looks_at_about_four_cells_not_nine() -> None:
    reach = Reach(50.0)
    rng = random.Random(11)
    counts = [
        len(_cells(reach, rng.uniform(107.4, 107.8), rng.uniform(16.2, 16.7))) for _ in range(5000)
    ]
    assert max(counts) <= 4 and min(counts) == 1
    assert 3.0 < sum(counts) / len(counts) < 4.0
