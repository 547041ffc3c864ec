"""Which grid cells an open ticket near a report can lie in.

Tickets carry the cell of a 0.001° grid (``tickets.cell_x`` and ``cell_y``, migration 0003;
about 110 m north to south, and about 107 m east to west in Huế). A new report joins an open
ticket of its category within a distance (``IOC_DEDUPE_DISTANCE_M``, 50 m by default) as
``metres`` measures it, so only the cells that such a ticket can lie in are looked at: those
met by the span of latitude and longitude a point that close can be off by.
"""

from __future__ import annotations

import math
from typing import Final

M_PER_DEG_LAT: Final = 110_574.0
M_PER_DEG_LON_EQ: Final = 111_320.0
CELLS_PER_DEG: Final = 1000  # must match the tickets.cell_x / cell_y columns (migration 0003)
# About 0.1 mm: far wider than the rounding of a coordinate times 1,000, so that a point on the
# edge of the reach is never put in a cell left out.
_MARGIN_DEG: Final = 1e-9
# Past 78° of latitude a degree of longitude is under a fifth of the equator's; the reach east
# and west is kept to what it is there.
_MIN_COS: Final = 0.2


def metres(a_lon: float, a_lat: float, b_lon: float, b_lat: float) -> float:
    """Distance on a local flat map: longitude scaled at the two points' mean latitude."""
    dx = (a_lon - b_lon) * M_PER_DEG_LON_EQ * math.cos(math.radians((a_lat + b_lat) / 2))
    return math.hypot(dx, (a_lat - b_lat) * M_PER_DEG_LAT)


def cell(lon: float, lat: float) -> tuple[int, int]:
    """A point's grid cell, computed exactly as the tickets.cell_x/cell_y columns are."""
    return math.floor(lon * CELLS_PER_DEG), math.floor(lat * CELLS_PER_DEG)


class Reach:
    """The cells within ``distance_m`` of a point."""

    def __init__(self, distance_m: float) -> None:
        self.distance_m = distance_m
        self._lat = distance_m / M_PER_DEG_LAT + _MARGIN_DEG

    def columns(self, lon: float, lat: float) -> list[tuple[int, int, int]]:
        """The cells within reach as columns: (cell_x, lowest cell_y, highest cell_y).

        East and west, the reach is taken at the latitude of its side nearer the pole, where a
        degree of longitude is the shortest. At 50 m in cells of about 110 m, a report's reach
        meets about two columns of about two cells (the nine cells around its own, before)."""
        reach_lat = self._lat
        far = min(abs(lat) + reach_lat, 90.0)
        reach_lon = (
            self.distance_m / (M_PER_DEG_LON_EQ * max(math.cos(math.radians(far)), _MIN_COS))
            + _MARGIN_DEG
        )
        low = math.floor((lat - reach_lat) * CELLS_PER_DEG)
        high = math.floor((lat + reach_lat) * CELLS_PER_DEG)
        west = math.floor((lon - reach_lon) * CELLS_PER_DEG)
        east = math.floor((lon + reach_lon) * CELLS_PER_DEG)
        return [(x, low, high) for x in range(west, east + 1)]
