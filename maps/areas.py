"""The jurisdictions the pages draw: the finest boundary set in force, simplified for a map."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date
from typing import Any, Final

import numpy as np
import shapely

from ioc.routing.jurisdictions import LEVELS, BoundarySet

# About 30 m at Vietnam's latitudes: invisible at a province's zoom, a fraction of the bytes.
SIMPLIFY_DEGREES: Final = 0.0003
# Where the map opens when no boundaries are loaded: Huế.
DEFAULT_BOUNDS: Final = ((16.35, 107.45), (16.60, 107.75))

_cache: dict[int, tuple[BoundarySet, dict[str, Any]]] = {}
_lock = threading.Lock()


def finest_in_force(sets: Sequence[BoundarySet], day: date) -> BoundarySet | None:
    """The most specific set in force on ``day`` (a level a newer finer set replaced is gone)."""
    for level in reversed(LEVELS):
        candidates = [s for s in sets if s.level == level and s.effective_from <= day]
        if candidates:
            return max(candidates, key=lambda s: s.effective_from)
    return None


def geojson(boundaries: BoundarySet) -> dict[str, Any]:
    """A FeatureCollection of the set's jurisdictions (code and name), simplified; cached."""
    with _lock:
        hit = _cache.get(id(boundaries))
        if hit is not None and hit[0] is boundaries:
            return hit[1]
    geoms = shapely.simplify(
        np.asarray(boundaries.geometries, dtype=object), SIMPLIFY_DEGREES, preserve_topology=True
    )
    features = [
        {
            "type": "Feature",
            "properties": {"code": code, "name": name},
            "geometry": shapely.geometry.mapping(geom),
        }
        for code, name, geom in zip(boundaries.codes, boundaries.names, geoms, strict=True)
    ]
    collection = {"type": "FeatureCollection", "features": features}
    with _lock:
        _cache.clear()  # one set is in force at a time; an old one is not asked for again
        _cache[id(boundaries)] = (boundaries, collection)
    return collection


def bounds(boundaries: BoundarySet | None) -> tuple[tuple[float, float], tuple[float, float]]:
    """((south, west), (north, east)) of the set, or of Huế when there is none."""
    if boundaries is None or len(boundaries) == 0:
        return DEFAULT_BOUNDS
    min_lon, min_lat, max_lon, max_lat = shapely.total_bounds(
        np.asarray(boundaries.geometries, dtype=object)
    ).tolist()
    return (min_lat, min_lon), (max_lat, max_lon)
