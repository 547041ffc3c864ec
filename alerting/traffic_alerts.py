"""What a traffic alert says: the title and details of a silent or a congested sensor's alert."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from ioc.alerts.records import NewAlert
from ioc.routing.router import Decision
from ioc.settings import Settings

# The rules' names, as alerts carry them.
SILENT: Final = "silent"
CONGESTION: Final = "congestion"


def _where(row: dict[str, Any]) -> str:
    name = str(row["name"] or "").strip()
    return f"{name} ({row['sensor_id']})" if name else str(row["sensor_id"])


def _local(moment: datetime, settings: Settings) -> str:
    return moment.astimezone(settings.zone).strftime("%H:%M %d/%m/%Y")


def _round(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def _sensor_alert(
    row: dict[str, Any],
    rule: str,
    title: str,
    details: dict[str, Any],
    settings: Settings,
    routed: Decision,
) -> NewAlert:
    """A warning about one sensor, at its place, for the agency routing chose."""
    return NewAlert(
        subject_kind="sensor",
        subject_id=str(row["sensor_id"]),
        rule=rule,
        level="warning",
        severity="warning",
        agency=routed.agency,
        title=title,
        category=settings.traffic_category,
        details={**details, "routing": routed.why()},
        lon=row["lon"],
        lat=row["lat"],
    )


def silent_alert(row: dict[str, Any], settings: Settings, routed: Decision) -> NewAlert:
    last: datetime | None = row["last_at"]
    if last is None:
        title = (
            f"Cảm biến {_where(row)} chưa gửi số liệu nào từ khi đăng ký"
            f" ({_local(row['registered_at'], settings)})"
        )
    else:
        title = f"Cảm biến {_where(row)} mất tín hiệu: không có số liệu từ {_local(last, settings)}"
    details = {
        "sensor": row["name"] or row["sensor_id"],
        "last_reading_at": None if last is None else last.astimezone(settings.zone).isoformat(),
        "registered_at": row["registered_at"].astimezone(settings.zone).isoformat(),
        "interval_s": row["interval_s"],
        "intervals": settings.silent_intervals,
        "threshold_s": row["threshold_s"],
    }
    return _sensor_alert(row, SILENT, title, details, settings, routed)


_WEEKDAYS: Final = ("", "thứ Hai", "thứ Ba", "thứ Tư", "thứ Năm", "thứ Sáu", "thứ Bảy", "Chủ nhật")


def _baseline_text(row: dict[str, Any]) -> str:
    """Which baseline judged the sensor, in the words of the alert."""
    weekday = int(row["weekday"])
    if row["kind"] == "same_weekday":
        return f"cùng giờ {_WEEKDAYS[weekday]} của {row['days']} tuần trước"
    kind = "cuối tuần" if weekday >= 6 else "làm việc (thứ Hai–thứ Sáu)"
    return f"cùng giờ {row['days']} ngày {kind} trước đó (chưa đủ số liệu cùng thứ)"


def congestion_alert(row: dict[str, Any], settings: Settings, routed: Decision) -> NewAlert:
    z = float(row["z"])
    slow = row["z_speed"] is not None and row["z_speed"] >= z
    busy = row["z_vehicles"] is not None and row["z_vehicles"] >= z
    speed = (
        f"tốc độ {row['speed']:.0f} km/h (thường {row['speed_mean']:.0f} km/h)"
        if row["speed"] is not None and row["speed_mean"] is not None
        else ""
    )
    volume = f"{row['vehicles']:.0f} xe/5 phút (thường {row['vehicles_mean']:.0f})"
    against = _baseline_text(row)
    if slow and busy:
        title = f"Ùn tắc tại {_where(row)}: {speed}, {volume}; so với {against}"
    elif slow:
        title = f"Ùn tắc tại {_where(row)}: {speed}; so với {against}"
    else:
        title = f"Lưu lượng tăng bất thường tại {_where(row)}: {volume}; so với {against}"
    details = {
        "sensor": row["name"] or row["sensor_id"],
        "trigger": [side for side, hit in (("speed", slow), ("vehicles", busy)) if hit],
        "window_s": row["window_s"],
        "recent": {
            "readings": row["readings"],
            "speed_kmh": _round(row["speed"]),
            "vehicles_per_5min": _round(row["vehicles"]),
        },
        "baseline": {
            "kind": row["kind"],
            "description": against,
            "weeks": row["weeks"],
            "days": row["days"],
            "samples": row["samples"],
            "speed_samples": row["speed_samples"],
            "min_vehicles_per_5min": row["min_vehicles"],
            "speed_kmh_mean": _round(row["speed_mean"]),
            "speed_kmh_sd": _round(row["speed_sd"]),
            "vehicles_per_5min_mean": _round(row["vehicles_mean"]),
            "vehicles_per_5min_sd": _round(row["vehicles_sd"]),
        },
        "z_speed": _round(row["z_speed"], 2),
        "z_vehicles": _round(row["z_vehicles"], 2),
        "z_threshold": z,
    }
    return _sensor_alert(row, CONGESTION, title, details, settings, routed)
