"""Health, readiness, metrics, the OpenAPI document, logs and documented settings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from ioc.errors import ConfigError
from ioc.logs import JsonLines
from ioc.settings import describe_settings, load_settings, mask_url
from tests.conftest import auth
from tests.test_ingest_api import NDJSON, ndjson, reading, report

README = Path(__file__).resolve().parent.parent / "README.md"


def test_metrics_count_events_by_kind_source_and_outcome(
    client: httpx.Client, source_key: str, admin_key: str, sensors: list[str]
) -> None:
    body = ndjson(reading(sensors[0], 1), reading(sensors[0], 1), {"kind": "nope"})
    client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    client.post("/v1/events", json=report(), headers=auth(source_key))
    text = client.get("/metrics", headers=auth(admin_key)).text
    assert 'ioc_events_total{kind="traffic_count",outcome="accepted",source="hue-s"} 1.0' in text
    assert 'ioc_events_total{kind="traffic_count",outcome="duplicate",source="hue-s"} 1.0' in text
    assert 'ioc_events_total{kind="unknown",outcome="rejected",source="hue-s"} 1.0' in text
    assert 'ioc_events_total{kind="field_report",outcome="accepted",source="hue-s"} 1.0' in text
    assert "ioc_ingest_seconds_bucket" in text
    assert "ioc_db_pool_size" in text


def test_openapi_describes_the_api(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert {"/v1/events", "/v1/events/batch", "/healthz", "/readyz", "/v1/sensors"} <= set(
        document["paths"]
    )
    schemas = document["components"]["schemas"]
    assert {"FieldReport", "TrafficCount", "DossierEvent", "Error"} <= set(schemas)
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["discriminator"]["propertyName"] == "kind"
    assert "422" in document["paths"]["/v1/events/batch"]["post"]["responses"]


def test_status_page_shows_counts_and_no_personal_data(
    client: httpx.Client, source_key: str, admin_key: str
) -> None:
    client.post("/v1/events", json=report(), headers=auth(source_key))
    page = client.get("/", headers=auth(admin_key))
    assert page.status_code == 200
    assert "Phản ánh hiện trường" in page.text
    assert "Nguyễn Văn A" not in page.text and "0900000001" not in page.text


def test_reporter_contact_never_reaches_the_logs(
    client: httpx.Client, source_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/events", json=report(), headers=auth(source_key))
        client.post("/v1/events", json=report("B") | {"lat": 99}, headers=auth(source_key))
    assert "0900000001" not in caplog.text and "Nguyễn Văn A" not in caplog.text


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [variable for variable, _, _ in describe_settings() if f"`{variable}`" not in text]
    assert missing == []


def test_secrets_are_masked() -> None:
    shown = load_settings(database_url="postgresql://ioc:s3cret@db:5432/ioc").shown()
    assert "s3cret" not in json.dumps(shown, default=str)
    assert mask_url("postgresql://u:p@h/d") == "postgresql://u:***@h/d"


def test_a_bad_setting_names_the_variable_and_value() -> None:
    with pytest.raises(ConfigError, match="IOC_TIMEZONE='Mars/Olympus'"):
        load_settings(timezone="Mars/Olympus")


def test_json_log_lines() -> None:
    record = logging.LogRecord(
        "ioc.test", logging.WARNING, __file__, 1, "sensor %s silent", ("S1",), None
    )
    record.sensor_id = "S1"
    line = json.loads(JsonLines().format(record))
    assert (line["level"], line["message"], line["sensor_id"]) == (
        "WARNING",
        "sensor S1 silent",
        "S1",
    )
