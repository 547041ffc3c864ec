"""Routing: point → jurisdiction (by the boundaries in force) → the responsible agency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from ioc.routing.index import How

LEVELS = ("ward", "district", "province")  # most specific first
_HCM = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass(frozen=True)
class Rule:
    id: int
    agency: str
    category: str | None = None
    level: str | None = None
    jurisdiction_code: str | None = None

    def specificity(self) -> tuple[int, int]:
        """Code beats level beats anywhere; then a category beats any category."""
        place = 2 if self.jurisdiction_code else 1 if self.level else 0
        return place, 1 if self.category else 0


@dataclass(frozen=True)
class Decision:
    """Where a report goes and why (recorded on the ticket)."""

    agency: str | None
    jurisdiction_code: str | None
    jurisdiction_name: str | None
    level: str | None
    how: str
    distance_m: float | None
    rule_id: int | None
    boundaries_from: str | None

    def why(self) -> dict[str, Any]:
        return {
            "jurisdiction": self.jurisdiction_code,
            "jurisdiction_name": self.jurisdiction_name,
            "level": self.level,
            "how": self.how,
            "distance_m": None if self.distance_m is None else round(self.distance_m, 1),
            "rule": self.rule_id,
            "boundaries_effective_from": self.boundaries_from,
            "queue": "unrouted" if self.agency is None else "agency",
        }


@dataclass
class Router:
    """Routes batches of points; vectorised per boundary set, rule matching per point."""

    sets: Sequence[Any]  # BoundaryVersion-like objects (ioc.routing.jurisdictions.BoundarySet)
    rules: Sequence[Rule]
    fallback_agency: str = "ioc"
    max_distance_m: float = 500.0
    _parents: dict[str, str | None] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for boundary in self.sets:
            for code, parent in zip(boundary.codes, boundary.parent_codes, strict=True):
                self._parents.setdefault(code, parent)
        self._ordered = sorted(self.rules, key=lambda r: r.specificity(), reverse=True)

    def in_force(self, level: str, when: date) -> Any | None:
        chosen = None
        for boundary in self.sets:
            applies = boundary.level == level and boundary.effective_from <= when
            if applies and (chosen is None or boundary.effective_from > chosen.effective_from):
                chosen = boundary
        return chosen

    def _levels_in_force(self, day: date) -> list[Any]:
        """Sets in force, most specific first. A level whose set predates a newer set of a more
        specific level was abolished by it (districts, after the 2025 reform)."""
        chosen: list[Any] = []
        for level in LEVELS:
            boundary = self.in_force(level, day)
            if boundary is None:
                continue
            if any(boundary.effective_from < finer.effective_from for finer in chosen):
                continue
            chosen.append(boundary)
        return chosen

    def route(
        self,
        lon: Sequence[float],
        lat: Sequence[float],
        categories: Sequence[str],
        when: Sequence[datetime],
    ) -> list[Decision]:
        n = len(lon)
        lons, lats = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        days = [w.astimezone(_HCM).date() for w in when]
        found: list[tuple[Any, int, str, float | None] | None] = [None] * n
        unmapped = [False] * n  # no boundaries in force at all on that day
        # Points are grouped by the boundary sets in force on their day, then located in bulk.
        groups: dict[tuple[int, ...], list[int]] = {}
        versions: dict[tuple[int, ...], list[Any]] = {}
        for i, day in enumerate(days):
            chosen = self._levels_in_force(day)
            key = tuple(id(b) for b in chosen)
            groups.setdefault(key, []).append(i)
            versions[key] = chosen
        for key, members in groups.items():
            rows = np.asarray(members)
            if not versions[key]:
                for i in members:
                    unmapped[i] = True
                continue
            pending = rows
            for boundary in versions[key]:
                if pending.size == 0:
                    break
                result = boundary.index().route_points(
                    lons[pending], lats[pending], self.max_distance_m
                )
                hit = result.index >= 0
                for position in np.flatnonzero(hit):
                    how = How(int(result.how[position])).name.lower()
                    distance = float(result.distance_m[position])
                    found[int(pending[position])] = (
                        boundary,
                        int(result.index[position]),
                        how,
                        distance if how == "nearest" else None,
                    )
                pending = pending[~hit]
        return [self._decide(found[i], categories[i], unmapped[i]) for i in range(n)]

    def _decide(
        self, hit: tuple[Any, int, str, float | None] | None, category: str, unmapped: bool
    ) -> Decision:
        if hit is None and unmapped:
            # With no map there is no "outside": rules that name no place still apply.
            for rule in self._ordered:
                if (
                    rule.jurisdiction_code is None
                    and rule.level is None
                    and rule.category in (None, category)
                ):
                    return Decision(
                        rule.agency, None, None, None, "no_boundaries", None, rule.id, None
                    )
            return Decision(
                self.fallback_agency, None, None, None, "no_boundaries", None, None, None
            )
        if hit is None:
            return Decision(None, None, None, None, "none", None, None, None)
        boundary, position, how, distance = hit
        code = boundary.codes[position]
        chain = self._chain(code)
        for rule in self._ordered:
            if rule.category not in (None, category):
                continue
            if rule.jurisdiction_code is not None and rule.jurisdiction_code not in chain:
                continue
            if rule.level is not None and rule.level != boundary.level:
                continue
            return Decision(
                rule.agency,
                code,
                boundary.names[position],
                boundary.level,
                how,
                distance,
                rule.id,
                boundary.effective_from.isoformat(),
            )
        return Decision(
            self.fallback_agency,
            code,
            boundary.names[position],
            boundary.level,
            how,
            distance,
            None,
            boundary.effective_from.isoformat(),
        )

    def placeless(self, category: str) -> Decision | None:
        """The most specific rule claiming ``category`` without naming a place, if any.

        An operator's re-routing (``ioc.tickets.triage``) falls back to it for a point outside
        every jurisdiction: the category was confirmed by a person, so its province-wide agency
        may take the report rather than leave it unrouted."""
        for rule in self._ordered:
            if rule.category == category and rule.jurisdiction_code is None and not rule.level:
                return Decision(rule.agency, None, None, None, "category_rule", None, rule.id, None)
        return None

    def _chain(self, code: str) -> set[str]:
        chain, current, seen = set(), code, 0
        while current and seen < 8:
            chain.add(current)
            current = self._parents.get(current) or ""
            seen += 1
        return chain
