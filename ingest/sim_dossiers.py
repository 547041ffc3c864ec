"""Simulated one-stop-shop dossiers: each one's lifecycle drawn in full when it arrives."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from ingest import sim_profiles as profiles

_REFUSED, _WITHDRAWN_EARLY = 0.03, 0.015  # shares ending before processing starts
_DROPPED = 0.025  # share withdrawn by the citizen or stopped during processing
_SUPPLEMENT, _NEVER_SUPPLIED = 0.15, 0.1
_LATE = 0.12
_RATED = 0.4  # share of returned dossiers whose citizen rates the service
# Scores 5..1: citizens rate a late result lower.
_SCORES, _ON_TIME_WEIGHTS, _LATE_WEIGHTS = (5, 4, 3, 2, 1), (55, 25, 10, 5, 5), (15, 20, 25, 20, 20)


class DossierPlanner:
    """Draws dossier lifecycles on a calendar compressed by `time_scale`."""

    def __init__(
        self, rng: random.Random, *, bbox: profiles.BBox, time_scale: float, source: str
    ) -> None:
        self._rng = rng
        self._bbox = bbox
        self._time_scale = time_scale
        self._source = source
        self._numbers: dict[tuple[str, str], int] = {}

    def working_span(self, start: float, days: int) -> float:
        """Clock seconds from `start` to `days` working days later on the compressed calendar."""
        local = datetime.fromtimestamp(start, profiles.TZ)
        # Weekdays only: these appointments are illustrative; the platform's own calendar
        # (public holidays, swap days) decides real deadlines.
        end, left = local, days
        while left > 0:
            end += timedelta(days=1)
            if end.weekday() < 5:
                left -= 1
        return (end - local).total_seconds() / self._time_scale

    def plan(self, t0: float) -> list[tuple[float, dict[str, Any]]]:
        """A dossier registered at epoch `t0`: its events (external_id unset) and their times."""
        rng = self._rng
        proc = rng.choice(profiles.PROCEDURES)
        agency = rng.choice(proc.agencies)
        channel = rng.choices(
            ("online", "counter", "kiosk", "bcci", "postal"), weights=(70, 20, 4, 4, 2)
        )[0]
        level = rng.choice(("partial", "full_process")) if channel == "online" else None
        has_fee = rng.random() < proc.fee_share
        day = datetime.fromtimestamp(t0, profiles.TZ).strftime("%y%m%d")
        no = self._numbers[(agency, day)] = self._numbers.get((agency, day), 0) + 1
        base: dict[str, Any] = {
            "kind": "dossier_event",
            "source": self._source,
            "external_id": None,  # numbered when released, so ids follow the order of the stream
            "dossier_id": f"H46.{profiles.AGENCY_UNITS[agency]}-{day}-{no:04d}",
            "procedure_code": proc.code,
            "agency": agency,
            "channel": channel,
            "online_level": level,
            "paid_online": has_fee and channel == "online" and rng.random() < 0.8,
            "digitised": rng.random() < 0.9,
        }
        if proc.located:
            base["lon"], base["lat"] = profiles.uniform_point(rng, self._bbox, margin=0.1)
        hour = 3600.0 / self._time_scale  # one simulated hour in clock seconds
        appointment: float | None = None
        plan: list[tuple[float, dict[str, Any]]] = []

        def step(at: float, name: str) -> None:
            appt = None if appointment is None else profiles.iso(appointment)
            plan.append((at, dict(base, event=name, at=profiles.iso(at), appointment_at=appt)))

        step(t0, "registered")
        accepted = t0 + rng.uniform(0.5, 8) * hour
        fate = rng.random()
        if fate < _REFUSED + _WITHDRAWN_EARLY:
            step(accepted, "refused" if fate < _REFUSED else "withdrawn")
            return plan
        appointment = accepted + self.working_span(accepted, proc.legal_days)
        step(accepted, "accepted")
        # Every later step sits at a share of `finish`, so the order holds whatever is drawn.
        span = appointment - accepted
        late = rng.random() < _LATE
        finish = span * (rng.uniform(1.03, 1.5) if late else rng.uniform(0.35, 0.97))
        pause = 0.0
        step(accepted + finish * 0.03, "in_processing")
        if rng.random() < _DROPPED:
            step(accepted + finish * rng.uniform(0.1, 0.6), rng.choice(("withdrawn", "stopped")))
            return plan
        if rng.random() < _SUPPLEMENT:
            step(accepted + finish * rng.uniform(0.15, 0.35), "supplement_requested")
            if rng.random() < _NEVER_SUPPLIED:
                step(accepted + finish * 0.45 + rng.uniform(48, 120) * hour, "stopped")
                return plan
            pause = rng.uniform(12, 96) * hour
            appointment += pause  # the legal clock stands still while the citizen is asked
            step(accepted + finish * 0.4 + pause, "supplement_received")
        if has_fee:
            step(accepted + finish * rng.uniform(0.55, 0.8) + pause, "fee_requested")
            step(accepted + finish * rng.uniform(0.82, 0.95) + pause, "fee_paid")
        done = accepted + finish + pause
        step(done, "processed")
        if late:
            step(done + rng.uniform(1, 24) * hour, "result_returned")
        else:
            step(done + (appointment - done) * rng.uniform(0.05, 0.9), "result_returned")
        if rng.random() < _RATED:
            step(plan[-1][0] + rng.uniform(1, 48) * hour, "rated")
            weights = _LATE_WEIGHTS if late else _ON_TIME_WEIGHTS
            plan[-1][1]["rating"] = rng.choices(_SCORES, weights=weights)[0]
        return plan
