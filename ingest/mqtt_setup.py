"""The MQTT subscriber built from the settings, and run with the platform (``ioc serve``) or
on its own (``ioc ingest mqtt``)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client import CollectorRegistry, Counter

from ingest.mqtt import MqttIngest
from ingest.mqtt_routes import load_routes
from ioc.auth import Principal
from ioc.clock import stop_if_cancelled
from ioc.errors import ConfigError, IocError
from ioc.platform import Platform
from ioc.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker is and how the subscriber talks to it."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None
    client_id: str = "ioc-ingest"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> BrokerConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(
                f"IOC_MQTT_URL: {parts.scheme or '(no scheme)'}://… is not a broker URL; "
                "write mqtt://[user:password@]host[:1883] or mqtts://… for TLS"
            )
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            client_id=settings.mqtt_client_id,
            ca_file=settings.mqtt_ca_file,
            cert_file=settings.mqtt_cert_file,
            key_file=settings.mqtt_key_file,
        )


def message_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "ioc_mqtt_events",
        "events from MQTT messages by outcome (stored, duplicate, refused: sent to the "
        "dead-letter topic)",
        ["outcome"],
        registry=registry,
    )


_counters: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def subscriber(platform: Platform, **options: Any) -> MqttIngest:
    """The platform's MQTT subscriber (settings, intake, API keys and metrics)."""
    settings = platform.settings
    if not settings.mqtt_url:
        raise ConfigError("IOC_MQTT_URL is not set: name the broker to take events from")
    registry = platform.metrics.registry
    if registry not in _counters:
        _counters[registry] = message_counter(registry)

    async def authorize(key: str) -> Principal:
        return await platform.verifier.verify(platform.pool.connection, key)

    return MqttIngest(
        BrokerConfig.from_url(settings.mqtt_url, settings),
        load_routes(settings.mqtt_routes_file),
        platform.intake,
        authorize,
        settings.mqtt_api_key,
        _counters[registry],
        dead_letter_topic=settings.mqtt_dead_letter_topic,
        batch_size=min(settings.mqtt_batch_size, settings.max_batch_events),
        share_group=settings.mqtt_share_group,
        **options,
    )


def install(platform: Platform) -> None:
    """Run the MQTT subscriber with the platform when IOC_MQTT_URL is set."""
    settings = platform.settings
    if not settings.mqtt_url:
        return
    BrokerConfig.from_url(settings.mqtt_url, settings)  # a wrong setting stops start-up
    load_routes(settings.mqtt_routes_file)

    async def work() -> None:
        while True:
            try:
                await subscriber(platform).run()
            except IocError as exc:  # e.g. a revoked key: say so, and try again later
                log.error("MQTT ingest is not running: %s; trying again in 30 s", exc.message)
            except Exception:
                log.exception("MQTT ingest failed; starting it again in 30 s")
            stop_if_cancelled()
            await asyncio.sleep(30)

    platform.add_worker("mqtt-ingest", work)
