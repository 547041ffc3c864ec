from __future__ import annotations

import httpx

from tests.conftest import RunningServer, auth, make_key


def test_health_and_ready(client: httpx.Client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["backend"] in ("plain", "timescale")


def test_healthz_names_the_process_only_to_watchers(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    operator_key = make_key(server, "operator")
    anonymous = client.get("/healthz").json()
    assert anonymous["status"] == "ok" and "pid" not in anonymous
    assert "pid" not in client.get("/healthz", headers=auth(source_key)).json()
    assert "pid" not in client.get("/healthz", headers=auth("not-a-key")).json()
    watched = client.get("/healthz", headers=auth(operator_key)).json()
    assert isinstance(watched["pid"], int) and isinstance(watched["upkeep_leader"], bool)


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
