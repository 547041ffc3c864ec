"""Ingest over HTTP: each event kind, batches, duplicates, and every kind of bad input."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from ioc.auth import Principal, Role
from ioc.events.validation import decode_one
from tests.conftest import RunningServer, auth, make_key

NDJSON = {"Content-Type": "application/x-ndjson"}


def reading(sensor: str, minute: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "traffic_count",
        "sensor_id": sensor,
        "observed_at": f"2025-08-01T08:{minute:02d}:00+07:00",
        "interval_s": 60,
        "vehicle_count": 10 + minute,
        "avg_speed_kmh": 40.0,
        **extra,
    }


def report(external_id: str = "HS-1", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": external_id,
        "category": "moi_truong",
        "description": "Rác thải tồn đọng trên đường Lê Lợi",
        "lon": 107.59,
        "lat": 16.46,
        "occurred_at": "2025-08-01T07:45:00+07:00",
        "reporter": {"name": "Nguyễn Văn A", "phone": "0900000001"},
        **extra,
    }


def dossier(event: str = "accepted", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "dossier_event",
        "dossier_id": "H46.22-250801-0001",
        "procedure_code": "1.001612",
        "agency": "SO-XD",
        "event": event,
        "at": "2025-08-01T08:10:00+07:00",
        "channel": "online",
        "online_level": "full_process",
        "appointment_at": "2025-08-08T17:00:00+07:00",
        "paid_online": True,
        "digitised": True,
        **extra,
    }


def ndjson(*events: dict[str, Any] | str) -> bytes:
    return "\n".join(
        e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in events
    ).encode()


def count(server: RunningServer, table: str) -> int:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # table names are ours
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("event", "table"),
    [
        (report(), "field_reports"),
        (dossier(), "dossier_events"),
    ],
)
def test_each_kind_is_stored_once(
    client: httpx.Client, source_key: str, server: RunningServer, event: dict[str, Any], table: str
) -> None:
    first = client.post("/v1/events", json=event, headers=auth(source_key))
    assert first.status_code == 201, first.text
    again = client.post("/v1/events", json=event, headers=auth(source_key))
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    # A field report's answer, repeated or not, carries the citizen's lookup code.
    assert again.json().get("lookup_code") == first.json().get("lookup_code")
    assert ("lookup_code" in first.json()) == (table == "field_reports")
    assert count(server, table) == 1


def stored_codes(server: RunningServer) -> dict[str, str]:
    with psycopg.connect(server.db_url) as conn:
        rows = conn.execute("SELECT external_id, id, lookup_secret FROM field_reports").fetchall()
    return {e: f"PA-{i}-{secret}" for e, i, secret in rows}


async def _post_together(url: str, key: str, events: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        return list(
            await asyncio.gather(*(c.post("/v1/events", json=e, headers=auth(key)) for e in events))
        )


def test_concurrent_reports_each_get_their_own_lookup_code(
    server: RunningServer, source_key: str
) -> None:
    """Reports written in one group commit take their codes from that write; a repeat, in the
    same group or after it, answers the code of the report stored first."""
    fresh = [report(f"C-{n}", lon=107.55 + n / 1000) for n in range(16)]
    answers = asyncio.run(_post_together(server.url, source_key, [*fresh, *fresh[:4]]))
    codes = stored_codes(server)
    assert len(codes) == 16
    for event, answer in zip([*fresh, *fresh[:4]], answers, strict=True):
        assert answer.status_code in (200, 201), answer.text
        assert answer.json()["lookup_code"] == codes[event["external_id"]]
    assert sorted(a.status_code for a in answers) == [200] * 4 + [201] * 16
    again = asyncio.run(_post_together(server.url, source_key, fresh[10:12]))
    assert [a.json()["lookup_code"] for a in again] == [codes["C-10"], codes["C-11"]]
    assert {a.status_code for a in again} == {200}


def test_a_stored_report_receipt_carries_its_code(server: RunningServer) -> None:
    """The intake reads the code in the write's own transaction: the answer needs no query."""
    who = Principal(None, "test", Role.SOURCE, source="hue-s")
    intake = server.platform.intake
    receipt = server.run(intake.submit(decode_one(json.dumps(report("R-1")).encode()), who))
    assert receipt.stored and receipt.lookup_code == stored_codes(server)["R-1"]
    repeat = server.run(intake.submit(decode_one(json.dumps(report("R-1")).encode()), who))
    assert (repeat.stored, repeat.lookup_code) == (False, None)


def test_reading_is_stored(
    client: httpx.Client, source_key: str, sensors: list[str], server: RunningServer
) -> None:
    assert (
        client.post("/v1/events", json=reading(sensors[0]), headers=auth(source_key)).status_code
        == 201
    )
    assert count(server, "traffic_readings") == 1


def test_time_without_offset_is_read_in_vietnam(
    client: httpx.Client, source_key: str, sensors: list[str], server: RunningServer
) -> None:
    event = reading(sensors[0]) | {"observed_at": "2025-08-01T07:00:00"}
    assert client.post("/v1/events", json=event, headers=auth(source_key)).status_code == 201
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute("SELECT observed_at FROM traffic_readings").fetchone()
    assert row is not None
    assert row[0].astimezone(UTC) == datetime(2025, 8, 1, 0, 0, tzinfo=UTC)


def test_source_key_fills_in_source(
    client: httpx.Client, source_key: str, server: RunningServer
) -> None:
    assert client.post("/v1/events", json=report(), headers=auth(source_key)).status_code == 201
    with psycopg.connect(server.db_url) as conn:
        assert conn.execute("SELECT source FROM field_reports").fetchone() == ("hue-s",)


def test_batch_keeps_valid_lines_and_names_each_bad_one(
    client: httpx.Client, source_key: str, sensors: list[str], server: RunningServer
) -> None:
    body = ndjson(
        reading(sensors[0], 1),
        reading(sensors[0], 2) | {"vehicle_count": "many"},
        "",
        '{"kind": "traffic_count", "sensor_id": ',
        report("HS-9") | {"lat": 123.4},
        reading("NOT-REGISTERED", 3),
        report("HS-10") | {"category": "ufo"},
        dossier() | {"event": "teleported"},
        {"kind": "parking_ticket"},
        dossier("registered"),
    )
    answer = client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["duplicates"], result["rejected"]) == (2, 0, 7)
    errors = {e["line"]: e for e in result["errors"]}
    assert sorted(errors) == [2, 4, 5, 6, 7, 8, 9]
    assert errors[2]["field"] == "vehicle_count"
    assert "malformed JSON" in errors[4]["reason"]
    assert errors[5]["field"] == "lat" and "90" in errors[5]["reason"]
    assert errors[6]["field"] == "sensor_id" and "not registered" in errors[6]["reason"]
    assert errors[7]["field"] == "category" and "moi_truong" in errors[7]["reason"]
    assert errors[8]["field"] == "event" and "result_returned" in errors[8]["reason"]
    assert errors[9]["field"] == "kind" and "traffic_count" in errors[9]["reason"]
    assert count(server, "traffic_readings") == 1
    assert count(server, "dossier_events") == 1


def test_batch_as_json_array(client: httpx.Client, source_key: str, sensors: list[str]) -> None:
    answer = client.post(
        "/v1/events/batch",
        json=[reading(sensors[1], m) for m in range(5)],
        headers=auth(source_key),
    )
    assert answer.status_code == 200
    assert answer.json()["accepted"] == 5


def test_duplicates_are_named_by_line(
    client: httpx.Client, source_key: str, sensors: list[str], server: RunningServer
) -> None:
    first = ndjson(reading(sensors[0], 1), report("A"), dossier("accepted"))
    assert (
        client.post("/v1/events/batch", content=first, headers=auth(source_key) | NDJSON).json()[
            "accepted"
        ]
        == 3
    )
    again = ndjson(
        reading(sensors[0], 1),
        reading(sensors[0], 2),
        reading(sensors[0], 2),
        report("A"),
        report("B"),
        dossier("accepted"),
        dossier("processed"),
    )
    result = client.post(
        "/v1/events/batch", content=again, headers=auth(source_key) | NDJSON
    ).json()
    assert result["accepted"] == 3
    assert result["duplicate_lines"] == [1, 3, 4, 6]
    assert count(server, "traffic_readings") == 2
    assert count(server, "field_reports") == 2
    assert count(server, "dossier_events") == 2


def test_replayed_batch_is_all_duplicates(
    client: httpx.Client, source_key: str, sensors: list[str]
) -> None:
    body = ndjson(*(reading(sensors[2], m) for m in range(10)))
    assert (
        client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON).json()[
            "accepted"
        ]
        == 10
    )
    replay = client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    assert replay.status_code == 200
    assert (replay.json()["accepted"], replay.json()["duplicates"]) == (0, 10)


def test_old_data_gets_its_partition(
    client: httpx.Client, source_key: str, sensors: list[str], server: RunningServer
) -> None:
    old = reading(sensors[0]) | {"observed_at": "2014-08-04T00:10:00"}
    assert client.post("/v1/events", json=old, headers=auth(source_key)).status_code == 201
    if server.platform.backend == "plain":
        with psycopg.connect(server.db_url) as conn:
            assert conn.execute("SELECT to_regclass('traffic_readings_p201408')").fetchone() != (
                None,
            )


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "needle"),
    [
        (b'{"kind": "traffic_count",', "application/json", 400, "malformed_body", "truncated"),
        (b'{"kind": "traffic_count" 7}', "application/json", 400, "malformed_body", "(byte 25)"),
        (
            json.dumps({"kind": "bus"}).encode(),
            "application/json",
            422,
            "invalid_input",
            "field_report",
        ),
        (
            json.dumps(report() | {"category": "ufo"}).encode(),
            "application/json",
            422,
            "invalid_input",
            "giao_thong",
        ),
        (
            json.dumps(report() | {"lon": 181}).encode(),
            "application/json",
            422,
            "invalid_input",
            "lon",
        ),
        (
            json.dumps(report() | {"occurred_at": "2099-01-01T00:00:00+07:00"}).encode(),
            "application/json",
            422,
            "invalid_input",
            "future",
        ),
        (
            json.dumps(report() | {"occurred_at": "1999-12-31T00:00:00+07:00"}).encode(),
            "application/json",
            422,
            "invalid_input",
            "2000",
        ),
        (
            json.dumps(report() | {"source": "someone-else"}).encode(),
            "application/json",
            422,
            "invalid_input",
            "hue-s",
        ),
        (
            json.dumps(report() | {"colour": "red"}).encode(),
            "application/json",
            422,
            "invalid_input",
            "colour",
        ),
        (
            json.dumps(dossier() | {"online_level": None}).encode(),
            "application/json",
            422,
            "invalid_input",
            "online_level",
        ),
        (
            json.dumps(report()).encode(),
            "text/plain",
            415,
            "unsupported_media_type",
            "application/json",
        ),
    ],
)
def test_single_event_errors(
    client: httpx.Client,
    source_key: str,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
    needle: str,
) -> None:
    answer = client.post(
        "/v1/events", content=body, headers=auth(source_key) | {"Content-Type": content_type}
    )
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert needle in error["message"]


def test_oversize_body_is_413(client: httpx.Client, source_key: str) -> None:
    body = b" " * (3 * 1024 * 1024)
    answer = client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"


def test_too_many_events_is_413(client: httpx.Client, source_key: str, sensors: list[str]) -> None:
    body = ndjson(*(reading(sensors[0], m % 60) for m in range(1001)))
    answer = client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    assert answer.status_code == 413
    assert "1000" in answer.json()["error"]["message"]


def test_batch_with_nothing_valid_is_422_with_each_line(
    client: httpx.Client, source_key: str
) -> None:
    answer = client.post(
        "/v1/events/batch",
        content=ndjson({"kind": "x"}, {"kind": "y"}),
        headers=auth(source_key) | NDJSON,
    )
    assert answer.status_code == 422
    assert [d["line"] for d in answer.json()["error"]["details"]] == [1, 2]


def test_batch_wrong_content_type_is_415(client: httpx.Client, source_key: str) -> None:
    answer = client.post(
        "/v1/events/batch", content=b"a,b", headers=auth(source_key) | {"Content-Type": "text/csv"}
    )
    assert answer.status_code == 415
    assert "application/x-ndjson" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Bearer ioc_abcdef012345_wrongsecret"},
    ],
)
def test_without_a_valid_key_is_401(client: httpx.Client, headers: dict[str, str]) -> None:
    answer = client.post("/v1/events", json=report(), headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("role", ["operator", "leader"])
def test_wrong_role_is_403(client: httpx.Client, server: RunningServer, role: str) -> None:
    key = make_key(server, role)
    answer = client.post("/v1/events", json=report(), headers=auth(key))
    assert answer.status_code == 403
    assert "source" in answer.json()["error"]["message"]


def test_revoked_key_is_401(client: httpx.Client, server: RunningServer, source_key: str) -> None:
    assert client.post("/v1/events", json=report("R1"), headers=auth(source_key)).status_code == 201
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now()")
    assert client.post("/v1/events", json=report("R2"), headers=auth(source_key)).status_code == 401


def test_admin_may_post_for_any_source(
    client: httpx.Client, admin_key: str, server: RunningServer
) -> None:
    assert (
        client.post(
            "/v1/events", json=report() | {"source": "ihanoi"}, headers=auth(admin_key)
        ).status_code
        == 201
    )
    missing = client.post("/v1/events", json=report("X2"), headers=auth(admin_key))
    assert missing.status_code == 422 and missing.json()["error"]["details"][0]["field"] == "source"


def test_every_error_has_the_one_shape(client: httpx.Client, source_key: str) -> None:
    answers = [
        client.get("/no/such/path"),
        client.get("/v1/events"),
        client.post("/v1/events", json={}),
        client.post(
            "/v1/events",
            content=b"{",
            headers=auth(source_key) | {"Content-Type": "application/json"},
        ),
        client.get("/v1/sensors", params={"limit": 0}, headers=auth(source_key)),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500
        error = answer.json()["error"]
        assert set(error) == {"code", "message", "details"}
        assert error["message"]


def test_reporter_is_stored_as_an_object(
    client: httpx.Client, source_key: str, server: RunningServer
) -> None:
    assert client.post("/v1/events", json=report(), headers=auth(source_key)).status_code == 201
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT jsonb_typeof(reporter), reporter->>'phone' FROM field_reports"
        ).fetchone()
    assert row == ("object", "0900000001")
