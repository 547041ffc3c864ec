from __future__ import annotations

import httpx

from tests.conftest import auth


def test_health_and_ready(client: httpx.Client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["backend"] in ("plain", "timescale")


def test_one_reading(client: httpx.Client, source_key: str, sensors: list[str]) -> None:
    event = {
        "kind": "traffic_count",
        "sensor_id": sensors[0],
        "observed_at": "2025-08-01T08:00:00",
        "interval_s": 300,
        "vehicle_count": 17,
        "avg_speed_kmh": 33.5,
    }
    first = client.post("/v1/events", json=event, headers=auth(source_key))
    assert first.status_code == 201, first.text
    again = client.post("/v1/events", json=event, headers=auth(source_key))
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
