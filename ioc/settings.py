"""Every setting of the platform, declared once with its default and meaning.

Settings are read from the environment with the ``IOC_`` prefix (``IOC_PORT=9000``) or from a
``.env`` file in the working directory. Secrets are masked whenever settings are shown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ioc.errors import ConfigError
from ioc.settings_lookup import LookupSettings
from ioc.settings_media_s3 import MediaS3Settings
from ioc.settings_mqtt import MqttSettings
from ioc.settings_sso import SsoSettings

_SECRET_FIELDS = frozenset(
    {
        "database_url",
        "read_database_url",
        "test_database_url",
        "mqtt_url",
        "mqtt_api_key",
        "oidc_client_secret",
        "media_s3_secret_key",
    }
)
# The views the video wall's playlist may name (the wall page draws each).
WALL_VIEWS = ("province", "centre", "dossiers", "traffic")


class Settings(LookupSettings, MediaS3Settings, MqttSettings, SsoSettings, BaseSettings):
    """Typed settings; one field per ``IOC_*`` environment variable."""

    model_config = SettingsConfigDict(
        env_prefix="IOC_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL/TimescaleDB URL. Unset: start the embedded PostgreSQL in data_dir.",
    )
    read_database_url: str | None = Field(
        default=None,
        description="Optional replica for read-only work (leaders' review, wall snapshots, Open311 GETs), e.g. a multi-host URL with target_session_attrs=prefer-standby; as stale as the replica's replay lag. Unset: the primary. Falls back to the primary while it is unreachable.",
    )
    data_dir: Path = Field(
        default=Path(platformdirs.user_data_dir("ioc")),
        description="Where the embedded PostgreSQL keeps its data (survives restarts).",
    )
    host: str = Field(default="127.0.0.1", description="Address the API server listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the API server listens on.")
    workers: int = Field(default=1, ge=1, le=64, description="API server processes.")
    timezone: str = Field(
        default="Asia/Ho_Chi_Minh",
        description="Zone for timestamps sent without an offset, and for day boundaries.",
    )
    pool_min_size: int = Field(default=2, ge=1, description="Database pool: connections kept open.")
    pool_max_size: int = Field(default=10, ge=1, description="Database pool: most connections.")
    pool_timeout_s: float = Field(
        default=5.0, gt=0, description="Wait this long for a pooled connection, then answer 503."
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest accepted request body (413 above)."
    )
    max_batch_events: int = Field(
        default=50_000, ge=1, description="Most events in one batch request (413 above)."
    )
    max_future_skew_s: int = Field(
        default=600, ge=0, description="Reject event times further than this in the future."
    )
    earliest_event_year: int = Field(
        default=2000, ge=1970, description="Reject event times before 1 January of this year."
    )
    timescale: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Use TimescaleDB: auto (when the server has it), on (require it), off.",
    )
    partition_months_ahead: int = Field(
        default=2, ge=0, description="Plain PostgreSQL: monthly partitions created this far ahead."
    )
    traffic_retention_days: int = Field(
        default=0, ge=0, description="Drop traffic readings older than this (0: keep forever)."
    )
    compress_after_days: int = Field(
        default=7, ge=1, description="TimescaleDB: compress time-series chunks older than this."
    )
    aggregate_refresh_s: float = Field(
        default=60.0, gt=0, description="How often traffic aggregates are refreshed."
    )
    migrate_on_start: bool = Field(
        default=True, description="Apply pending database migrations when the server starts."
    )
    key_cache_s: float = Field(
        default=5.0, ge=0, description="API keys are re-checked against the database this often."
    )
    session_ttl_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="A page login (session) lasts this long (seconds); logging out or revoking the key ends it sooner.",
    )
    cookie_secure: bool = Field(
        default=False,
        description="Pages are served over https (e.g. behind a TLS proxy): the session cookie is Secure and named __Host-ioc_session.",
    )
    auth_failure_burst: int = Field(
        default=30,
        ge=1,
        description="Failed authentications one client address may make at once before it is answered 429.",
    )
    auth_failure_per_minute: float = Field(
        default=30.0,
        gt=0,
        description="…and the rate (per minute) at which that allowance refills.",
    )
    public_status: bool = Field(
        default=False,
        description="Serve /metrics and the status page / without a key (otherwise: an operator or admin key).",
    )
    route_max_distance_m: float = Field(
        default=500.0,
        ge=0,
        description="A point outside every jurisdiction goes to the nearest one within this distance; beyond it, to the unrouted queue.",
    )
    dedupe_distance_m: float = Field(
        default=50.0,
        ge=0,
        description="A report this close to an open ticket of its category joins it as a duplicate.",
    )
    dedupe_window_s: float = Field(
        default=86_400.0, ge=0, description="…and this close in time (seconds)."
    )
    fallback_agency: str = Field(
        default="ioc",
        description="The catch-all operator queue: reports no responsibility rule claims.",
    )
    # -- SLA clocks and alerts ------------------------------------------------------------
    office_hours: str = Field(
        default="07:30-11:30,13:30-17:00",
        description="Office hours counted as working time, comma-separated HH:MM-HH:MM spans.",
    )
    swap_days_file: Path | None = Field(
        default=None,
        description="A TOML file of extra swap days (off/worked) laid over the built-in notices.",
    )
    sla_engine: bool = Field(
        default=True, description="Run the SLA and traffic alert engine inside the server."
    )
    sla_tick_s: float = Field(
        default=5.0, gt=0, description="How often the SLA engine looks for clocks that are due."
    )
    sla_batch: int = Field(
        default=5_000, ge=1, description="Most clocks the SLA engine handles in one transaction."
    )
    sla_due_soon_fraction: float = Field(
        default=0.75,
        gt=0,
        lt=1,
        description="Warn (due soon) when this share of the allowed time is used.",
    )
    sla_escalate_after_s: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="Escalate to the parent agency and the leaders when a subject is overdue and nobody has acted on it for this long (seconds; office time when the deadline is in working time).",
    )
    sla_backfill_grace_s: float = Field(
        default=0.0,
        ge=0,
        description="A ticket or dossier raises no alert for a moment (due soon, deadline, escalation) that passed more than this long before the record arrived: imported history pages nobody (seconds).",
    )
    apology_extension_days: int = Field(
        default=5,
        ge=1,
        description="A late dossier's apology letter (form 04) sets a new appointment this many working days later.",
    )
    alert_digest_s: float = Field(
        default=3600.0,
        gt=0,
        description="Due-soon and traffic alerts are sent to each agency in a digest this often.",
    )
    alert_repeat_s: float = Field(
        default=4 * 3600.0,
        ge=0,
        description="Unacknowledged overdue and escalated alerts are sent again this often (0: never).",
    )
    traffic_category: str = Field(
        default="giao_thong",
        description="Category traffic alerts are routed by (with the sensor's location).",
    )
    traffic_check_s: float = Field(
        default=60.0, gt=0, description="How often traffic sensors are checked for alerts."
    )
    silent_intervals: int = Field(
        default=3,
        ge=1,
        description="A sensor is silent after this many of its reporting intervals without a reading.",
    )
    congestion_z: float = Field(
        default=3.0,
        gt=0,
        description="Congestion: recent speed or count this many standard deviations from the sensor's baseline.",
    )
    congestion_window_s: float = Field(
        default=900.0, gt=0, description="Congestion: the recent window compared with the baseline."
    )
    congestion_baseline_days: int = Field(
        default=28,
        ge=7,
        description="Congestion: days of history the baseline (same weekday and time; with too few of those, the same day type) is taken from.",
    )
    congestion_min_samples: int = Field(
        default=6,
        ge=2,
        description="Congestion: fewest baseline samples before a sensor is judged.",
    )
    congestion_min_vehicles: float = Field(
        default=3.0,
        ge=0,
        description="Congestion: a speed counts only from a reading (or baseline bucket) with at least this many vehicles per 5 minutes.",
    )
    live_frame_interval_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="Live feeds: the subscribers of one filter are sent at most one frame this often (milliseconds); 0 sends what is read at once. A notice after a quiet spell always goes at once.",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="Webhook delivery: wait this long for the endpoint."
    )
    webhook_max_attempts: int = Field(
        default=12, ge=1, description="Webhook delivery: attempts before a message is marked dead."
    )
    webhook_backoff_s: float = Field(
        default=30.0, gt=0, description="Webhook delivery: first retry delay; doubles each attempt."
    )
    webhook_backoff_max_s: float = Field(
        default=3600.0, gt=0, description="Webhook delivery: longest retry delay."
    )
    # -- photos on field reports ---------------------------------------------------------------
    media_dir: Path | None = Field(
        default=None,
        description="Folder of the media store (photos and previews, named by their SHA-256). Unset: data_dir/media.",
    )
    media_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Largest accepted image file (413 above)."
    )
    media_max_pixels: int = Field(
        default=40_000_000,
        ge=1,
        le=89_000_000,
        description="Most pixels (width × height) an image may declare; a larger one is refused before it is decoded (decompression bombs).",
    )
    media_per_report: int = Field(
        default=5, ge=1, le=20, description="Most images uploaded with one report."
    )
    media_preview_px: int = Field(
        default=480, ge=64, le=2048, description="Longest side of an image's preview, in pixels."
    )
    media_on_wall: bool = Field(
        default=False,
        description="Show a ticket's photos in its popup on the wall map (/wall, not the kiosk view); they can show faces and number plates. Off: the wall never shows them.",
    )
    # -- pages -----------------------------------------------------------------------------
    map_tiles: str = Field(
        default="osm",
        description="Map background: osm (OpenStreetMap), none, or a tile URL template such as http://tiles.internal/{z}/{x}/{y}.png.",
    )
    wall_playlist: str = Field(
        default="province:60,centre:30,dossiers:30,traffic:30",
        description="Video wall (/wall?kiosk=1): the views it rotates through, each view:seconds, comma-separated; views: province, centre, dossiers, traffic. Empty: no rotation.",
    )
    wall_centre: str = Field(
        default="",
        description="Video wall: the city centre view as lon,lat,zoom (e.g. 107.585,16.463,15); empty: the middle of the province, zoomed in.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as readable text or as JSON lines."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Least severe log level written."
    )

    @field_validator("wall_playlist")
    @classmethod
    def _known_views(cls, value: str) -> str:
        for step in filter(None, (s.strip() for s in value.split(","))):
            view, _, seconds = step.partition(":")
            try:
                ok = view.strip() in WALL_VIEWS and float(seconds) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"{step!r} is not view:seconds with a view of {', '.join(WALL_VIEWS)}"
                )
        return value

    @field_validator("wall_centre")
    @classmethod
    def _lon_lat_zoom(cls, value: str) -> str:
        parts = value.split(",") if value.strip() else []
        try:
            lon, lat, zoom = (float(p) for p in parts) if parts else (0.0, 0.0, 1.0)
        except ValueError:
            lon, lat, zoom = 999.0, 0.0, 0.0
        if not (-180 <= lon <= 180 and -90 <= lat <= 90 and 1 <= zoom <= 22):
            raise ValueError(f"{value!r} is not lon,lat,zoom (e.g. 107.585,16.463,15)")
        return value

    def wall_steps(self) -> list[tuple[str, float]]:
        """The video wall's playlist as (view, seconds)."""
        steps = filter(None, (s.strip() for s in self.wall_playlist.split(",")))
        return [(v.strip(), float(n)) for v, _, n in (s.partition(":") for s in steps)]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (e.g. 'Asia/Ho_Chi_Minh')") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def shown(self) -> dict[str, Any]:
        """Settings as a dict for display, with secrets masked."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if name in _SECRET_FIELDS and isinstance(value, str):
                value = mask_url(value) if "://" in value else "***"
            out[name] = value
        return out


def mask_url(url: str) -> str:
    """Hide the password in a database URL."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def load_settings(**overrides: Any) -> Settings:
    """Read settings; a bad value raises ConfigError naming the variable and the value."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"IOC_{field.upper()}={err.get('input')!r}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, for the README and `ioc settings`."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else str(default)
        if name == "data_dir":
            shown = "the user data directory, e.g. ~/.local/share/ioc"
        rows.append((f"IOC_{name.upper()}", shown, field.description or ""))
    return rows
