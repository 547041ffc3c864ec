"""MQTT ingest's settings, declared apart (``ioc.settings.Settings`` takes them in, with its
``IOC_`` prefix) so the settings module stays readable."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class MqttSettings(BaseModel):
    """IOC_MQTT_…: the broker, the session, the topics and TLS."""

    mqtt_url: str | None = Field(
        default=None,
        description="MQTT broker to take events from: mqtt://[user:password@]host[:1883], mqtts://… for TLS. Unset: `ioc serve` runs no MQTT subscriber.",
    )
    mqtt_client_id: str = Field(
        default="ioc-ingest",
        min_length=1,
        description="MQTT client id: names the persistent session the broker keeps while the subscriber is away.",
    )
    mqtt_api_key: str | None = Field(
        default=None,
        description="The API key MQTT events are checked with (a source key writes only as its source, an admin key as the source each event names).",
    )
    mqtt_routes_file: Path | None = Field(
        default=None,
        description="A TOML file of [[route]] tables: topics, event kinds and device field mappings. Unset: ioc/events/#, ioc/traffic/{sensor_id}, ioc/reports/#, ioc/dossiers/#, ioc/feedback/#.",
    )
    mqtt_dead_letter_topic: str = Field(
        default="ioc/dead-letter",
        min_length=1,
        description="Refused MQTT messages are published here with the reason.",
    )
    mqtt_batch_size: int = Field(
        default=5_000,
        ge=1,
        description="Most MQTT events (messages, or elements of a gateway's arrays) written in one transaction.",
    )
    mqtt_share_group: str | None = Field(
        default=None,
        pattern=r"^[^/+#]+$",
        description="Subscribe as a member of this MQTT shared subscription group ($share/GROUP/topic): the broker spreads the messages over the group's subscribers, each with its own IOC_MQTT_CLIENT_ID. Unset: plain subscriptions.",
    )
    mqtt_ca_file: Path | None = Field(
        default=None,
        description="mqtts: CA certificates to check the broker with (default: the system's).",
    )
    mqtt_cert_file: Path | None = Field(
        default=None, description="mqtts: a client certificate, for brokers that require one."
    )
    mqtt_key_file: Path | None = Field(
        default=None, description="mqtts: the client certificate's private key."
    )
