"""One client's bad event never costs another client's events, and no request does unbounded work.

Values the database would refuse are refused by validation, line by line; a value that passes
validation but that the database refuses anyway (a CHECK constraint added here) fails only its
own event, in a group commit, a batch and over the WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from ioc.errors import MalformedBody, PayloadTooLarge
from ioc.events.jsonscan import scan_array, separators
from ioc.events.validation import count_events, decode_batch
from ioc.settings import Settings
from tests.conftest import RunningServer, auth, start_server, stop_server
from tests.test_ingest_api import NDJSON, count, dossier, ndjson, reading, report

NUL = "\u0000"

# (field named in the refusal, the poisoned event)
POISONS: list[tuple[str, dict[str, Any]]] = [
    ("description", report("P-DESC", description=f"rác{NUL}thải")),
    ("address", report("P-ADDR", address=f"Lê Lợi{NUL}")),
    ("reporter.name", report("P-NAME", reporter={"name": f"A{NUL}", "phone": "0900000001"})),
    ("media_urls[1]", report("P-URL", media_urls=["https://a.vn/1.jpg", f"https://a.vn/{NUL}"])),
    ("occurred_at", report("P-OFFSET", occurred_at="2025-08-01T07:45:00-23:59")),
    ("occurred_at", report("P-OFFSET16", occurred_at="2025-08-01T07:45:00+16:00")),
    ("appointment_at", dossier(appointment_at="2025-08-08T17:00:00+23:00", external_id="P-APT")),
]


def _valid(n: int, prefix: str) -> list[dict[str, Any]]:
    return [report(f"{prefix}-{i}") for i in range(n)]


@pytest.mark.parametrize(("field", "poison"), POISONS, ids=[p[1]["external_id"] for p in POISONS])
def test_batch_refuses_the_unstorable_line_and_keeps_the_rest(
    server: RunningServer, client: httpx.Client, source_key: str, field: str, poison: dict[str, Any]
) -> None:
    body = ndjson(*_valid(3, "B"), poison, report("B-LAST"))
    answer = client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (4, 1)
    (error,) = result["errors"]
    assert (error["line"], error["field"]) == (4, field)
    assert count(server, "field_reports") == 4


def test_sensor_reading_with_an_unstorable_real_is_refused(
    server: RunningServer, client: httpx.Client, source_key: str, sensors: list[str]
) -> None:
    body = ndjson(reading(sensors[0], 1), reading(sensors[0], 2, occupancy=1e-50))
    answer = client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["errors"][0]["field"] == "occupancy"
    assert count(server, "traffic_readings") == 1


def test_lone_surrogate_is_a_malformed_line_and_the_rest_is_kept(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    poisoned = json.dumps(report("SUR-2"), ensure_ascii=False).replace("Lê Lợi", "L\\ud800 Lợi")
    body = ndjson(report("SUR-1"), poisoned, report("SUR-3"))
    answer = client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (2, 1)
    assert result["errors"][0]["line"] == 2
    assert "surrogate" in result["errors"][0]["reason"]
    assert count(server, "field_reports") == 2


def test_nul_in_a_json_array_batch_is_refused_by_line(
    client: httpx.Client, source_key: str
) -> None:
    body = json.dumps([report("A-1"), report("A-2", description=NUL)])
    answer = client.post(
        "/v1/events/batch",
        content=body,
        headers=auth(source_key) | {"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["errors"] == [
        {
            "line": 2,
            "field": "description",
            "reason": "text cannot contain the NUL character (\\u0000)",
        }
    ]


def _post_concurrently(
    server: RunningServer, key: str, events: list[dict[str, Any]]
) -> list[httpx.Response]:
    """POST each event from its own thread, all released at once (one group commit or a few)."""
    answers: list[httpx.Response | None] = [None] * len(events)
    start = threading.Barrier(len(events))

    def post(index: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            start.wait()
            answers[index] = c.post("/v1/events", json=events[index], headers=auth(key))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


@pytest.mark.parametrize(("field", "poison"), POISONS[:5], ids=[p[0] for p in POISONS[:5]])
def test_concurrent_singles_lose_nothing_to_a_poisoned_one(
    server: RunningServer, source_key: str, field: str, poison: dict[str, Any]
) -> None:
    valid = _valid(12, "S")
    answers = _post_concurrently(server, source_key, [*valid[:6], poison, *valid[6:]])
    poisoned = answers.pop(6)
    assert [a.status_code for a in answers] == [201] * 12
    assert poisoned.status_code == 422, poisoned.text
    assert poisoned.json()["error"]["details"][0]["field"] == field
    assert count(server, "field_reports") == 12


async def _gateway(server: RunningServer, key: str, messages: list[str]) -> list[dict[str, Any]]:
    async with websockets.connect(
        f"{server.ws_url}/v1/events/ws", additional_headers=auth(key), max_size=None
    ) as socket:
        acks = []
        for message in messages:
            await socket.send(message)
            acks.append(json.loads(await socket.recv()))
        return acks


def test_websocket_refuses_poisoned_lines_and_keeps_the_socket(
    server: RunningServer, source_key: str
) -> None:
    messages = [
        ndjson(report("W-1"), POISONS[0][1], POISONS[4][1], report("W-2")).decode(),
        json.dumps(POISONS[2][1]),
        json.dumps(report("W-3")),
    ]
    first, second, third = asyncio.run(_gateway(server, source_key, messages))
    assert (first["status"], first["accepted"], first["rejected"]) == (200, 2, 2)
    assert [e["field"] for e in first["errors"]] == ["description", "occurred_at"]
    assert second["status"] == 422 and second["errors"][0]["field"] == "reporter.name"
    assert (third["seq"], third["accepted"]) == (3, 1)
    assert count(server, "field_reports") == 3


# --- defence in depth: a value validation lets through but the database refuses ------------


@pytest.fixture
def picky_server(server: RunningServer) -> RunningServer:
    """The test's own database refuses the description 'forbidden' (a CHECK constraint)."""
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE field_reports ADD CONSTRAINT no_forbidden"
            " CHECK (description <> 'forbidden')"
        )
    return server


def test_group_commit_isolates_an_event_the_database_refuses(
    picky_server: RunningServer, source_key: str
) -> None:
    valid = _valid(15, "G")
    answers = _post_concurrently(
        picky_server, source_key, [*valid[:7], report("G-BAD", description="forbidden"), *valid[7:]]
    )
    refused = answers.pop(7)
    assert [a.status_code for a in answers] == [201] * 15
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_input"
    assert "no_forbidden" in error["message"]
    assert count(picky_server, "field_reports") == 15


def test_batch_isolates_lines_the_database_refuses(
    picky_server: RunningServer, source_key: str, client: httpx.Client
) -> None:
    lines = [*_valid(20, "D")]
    lines[3] = report("D-BAD-1", description="forbidden")
    lines[17] = report("D-BAD-2", description="forbidden")
    body = ndjson(*lines)
    answer = client.post("/v1/events/batch", content=body, headers=auth(source_key) | NDJSON)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (18, 2)
    assert [e["line"] for e in result["errors"]] == [4, 18]
    assert "no_forbidden" in result["errors"][0]["reason"]
    assert count(picky_server, "field_reports") == 18


def test_websocket_isolates_lines_the_database_refuses(
    picky_server: RunningServer, source_key: str
) -> None:
    messages = [
        ndjson(report("WD-1"), report("WD-BAD", description="forbidden")).decode(),
        json.dumps(report("WD-BAD-2", description="forbidden")),
        json.dumps(report("WD-2")),
    ]
    first, second, third = asyncio.run(_gateway(picky_server, source_key, messages))
    assert (first["accepted"], first["rejected"]) == (1, 1)
    assert second["status"] == 422 and "no_forbidden" in second["errors"][0]["reason"]
    assert third["accepted"] == 1
    assert count(picky_server, "field_reports") == 2


# --- bounded work: the cap before decoding, deep nesting, the WebSocket frame limit --------


def test_event_cap_is_counted_on_the_raw_body() -> None:
    count_events(b"{}\n" * 10 + b"\n\n  \n", "application/x-ndjson", 10)
    with pytest.raises(PayloadTooLarge, match="more than 10 events"):
        count_events(b"{}\n" * 11, "application/x-ndjson", 10)
    count_events(b"[" + b"{},\n" * 9 + b"{}]", "application/json", 10)
    with pytest.raises(PayloadTooLarge, match="more than 10 events"):
        count_events(b"[" + b"{}," * 10 + b"{}]", "application/json", 10)
    # Commas inside strings and inner arrays are not elements.
    inner = json.dumps([{"a": [1, 2, 3], "b": 'x,"y",\\,'}] * 10).encode()
    count_events(inner, "application/json", 10)


def test_array_scan_follows_strings_escapes_and_chunks() -> None:
    body = json.dumps([{"d": 'a\\",[{', "e": [[1], {"f": "\\\\"}]}, "]", [], 0]).encode()
    for chunk in (1, 2, 3, 5, 1 << 18):
        shape = scan_array(body, chunk)
        assert (shape.elements, shape.depth) == (4, 4)


def test_array_separators_are_the_top_level_commas() -> None:
    body = json.dumps([{"d": 'a\\",[{', "e": [[1], {"f": "\\\\"}]}, "]", [], 0]).encode()
    for chunk in (1, 2, 3, 5, 1 << 18):
        cuts = separators(body, chunk)
        assert cuts is not None
        assert separators(body, chunk, deepest=3) is None
        assert json.loads(b"[" + body[cuts[-1] + 1 :]) == [0]
        assert len(cuts) == 3


def test_a_large_array_is_decoded_element_by_element_as_the_whole() -> None:
    events = [report(f"RUN-{n}", description='a, [b] {c} \\" d') for n in range(12_000)]
    events[7] = {"kind": "nope"}
    body = b" \n" + json.dumps(events).encode() + b"\n "
    assert len(body) > 2 << 20
    decoded = decode_batch(body, "application/json")
    assert len(decoded.events) == 11_999
    assert [(r.line, r.field) for r in decoded.rejected] == [(8, "kind")]
    assert decoded.lines[6:8] == [7, 9]
    # Malformed anywhere, the body is refused as a whole, as a whole-body decode would.
    text = body.decode()
    for bad in (
        text.replace("}]", "},]"),
        text.replace("}, {", "} {", 1),
        text.replace("}, {", "},, {", 1),
        text.replace("}, {", "}, 1 2, {", 700),
        text[:-4],
    ):
        with pytest.raises(MalformedBody):
            decode_batch(bad.encode(), "application/json")


def test_a_million_empty_lines_are_refused_without_decoding(
    client: httpx.Client, source_key: str
) -> None:
    answer = client.post(
        "/v1/events/batch", content=b"{}\n" * 600_000, headers=auth(source_key) | NDJSON
    )
    assert answer.status_code == 413
    assert "more than 1000 events" in answer.json()["error"]["message"]
    array = b"[" + b"{}," * 600_000 + b"{}]"
    answer = client.post(
        "/v1/events/batch",
        content=array,
        headers=auth(source_key) | {"Content-Type": "application/json"},
    )
    assert answer.status_code == 413


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("POST", "/v1/events/batch", "application/json"),
        ("POST", "/v1/events/batch", "application/x-ndjson"),
        ("POST", "/v1/events", "application/json"),
        ("PUT", "/v1/admin/config", "application/json"),
        ("POST", "/v1/sensors", "application/json"),
    ],
)
def test_deeply_nested_json_is_a_4xx_in_the_error_shape(
    client: httpx.Client, admin_key: str, method: str, path: str, content_type: str
) -> None:
    answer = client.request(
        method, path, content=DEEP, headers=auth(admin_key) | {"Content-Type": content_type}
    )
    assert 400 <= answer.status_code < 500, answer.text
    error = answer.json()["error"]
    assert error["code"] in ("malformed_body", "invalid_input") and error["message"]


def test_websocket_answers_deep_nesting_and_keeps_the_socket(
    server: RunningServer, source_key: str
) -> None:
    acks = asyncio.run(_gateway(server, source_key, [DEEP.decode(), json.dumps(report("N-1"))]))
    assert acks[0]["status"] in (400, 422) and "nested too deeply" in json.dumps(acks[0])
    assert acks[1]["accepted"] == 1


@pytest.fixture
def roomy_server(settings: Settings) -> Any:
    """Bodies up to 17 MiB: above uvicorn's default WebSocket message limit (16 MiB)."""
    thread, running = start_server(settings.model_copy(update={"max_body_bytes": 17 << 20}))
    yield running
    stop_server(thread)


def test_websocket_message_limit_is_the_body_limit(roomy_server: RunningServer) -> None:
    from tests.conftest import make_key

    key = make_key(roomy_server, "source", source="hue-s")
    padding = " " * (16 << 20)
    big = json.dumps(report("BIG-1")) + padding
    (ack,) = asyncio.run(_gateway(roomy_server, key, [big]))
    assert ack["accepted"] == 1
    assert count(roomy_server, "field_reports") == 1


def test_websocket_answers_a_failing_database_with_an_ack_and_keeps_the_socket(
    server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                        $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$""")
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON field_reports"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    messages = [json.dumps(report("FIRE")), json.dumps(reading(sensors[0], 5))]
    failed, stored = asyncio.run(_gateway(server, source_key, messages))
    assert failed["status"] == 500 and failed["error"]["code"] == "internal_error"
    assert (stored["seq"], stored["accepted"]) == (2, 1)
    assert count(server, "traffic_readings") == 1
