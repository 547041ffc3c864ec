"""The agency side of tickets over real HTTP and websockets: queue, actions, scoping, live feed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from ioc.live import LiveHub
from ioc.store.keys import create_key
from ioc.tickets.opening import CHANNEL
from tests.conftest import RunningServer, auth, make_key, make_user

NDJSON = {"Content-Type": "application/x-ndjson"}
OLD = "2025-08-01T07:45:00+07:00"  # deadlines long past: overdue while open
OTHER = "so-xd"  # a second agency, responsible for xay_dung reports


# --- helpers -------------------------------------------------------------------------------


def fresh() -> str:
    """A time a minute ago: a ticket opened now is not yet overdue."""
    return (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


def report(n: int, category: str = "moi_truong", at: str = OLD, **extra: Any) -> dict[str, Any]:
    # A kilometre apart, so no report joins another's ticket as a duplicate.
    return {
        "kind": "field_report",
        "external_id": f"T-{n}",
        "category": category,
        "description": f"Phản ánh số {n}",
        "lon": 107.50 + n * 0.01,
        "lat": 16.46,
        "occurred_at": at,
        "address": f"{n} Lê Lợi, Huế",
        "reporter": {"name": "Nguyễn Văn A", "phone": "0900000001"},
        "media_urls": [f"https://example.org/{n}.jpg"],
        **extra,
    }


def ticket_of(server: RunningServer, n: int) -> int:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (f"T-{n}",)
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def post(client: httpx.Client, key: str, event: dict[str, Any]) -> None:
    answer = client.post("/v1/events", json=event, headers=auth(key))
    assert answer.status_code == 201, answer.text


def post_many(client: httpx.Client, key: str, events: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(e, ensure_ascii=False) for e in events).encode()
    answer = client.post("/v1/events/batch", content=body, headers=auth(key) | NDJSON)
    assert answer.status_code == 200 and answer.json()["accepted"] == len(events), answer.text


def act(client: httpx.Client, key: str, ticket: int, action: str, **body: Any) -> httpx.Response:
    return client.post(
        f"/v1/tickets/{ticket}/actions", json={"action": action, **body}, headers=auth(key)
    )


def moved(client: httpx.Client, key: str, ticket: int, action: str, **body: Any) -> dict[str, Any]:
    answer = act(client, key, ticket, action, **body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def listed(client: httpx.Client, key: str, **params: Any) -> list[int]:
    answer = client.get("/v1/tickets", params=params, headers=auth(key))
    assert answer.status_code == 200, answer.text
    return [t["id"] for t in answer.json()["tickets"]]


def assert_error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def receive(socket: ClientConnection, timeout: float = 1.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(socket.recv(timeout=timeout))
    return message


def receive_ticket(socket: ClientConnection, ticket: int, timeout: float = 1.0) -> dict[str, Any]:
    """The next message about ``ticket`` (others for the same feed may come first)."""
    while True:
        message = receive(socket, timeout)
        if message.get("ticket") == ticket:
            return message


# Every legal action, with the moves that bring a new ticket to where it applies.
ACTIONS: dict[str, tuple[list[tuple[str, dict[str, str]]], dict[str, str], str]] = {
    "assign": ([], {"assignee": "tran.b"}, "assigned"),
    "start": ([], {}, "in_progress"),
    "wait": ([("start", {})], {"reason": "chờ vật tư"}, "waiting"),
    "resume": ([("start", {}), ("wait", {"reason": "chờ"})], {}, "in_progress"),
    "resolve": ([("start", {})], {}, "resolved"),
    "close": ([("start", {}), ("resolve", {})], {}, "closed"),
    "reopen": (
        [("start", {}), ("resolve", {}), ("close", {})],
        {"reason": "vẫn còn rác"},
        "reopened",
    ),
    "transfer": ([], {"reason": "thuộc lĩnh vực xây dựng", "to_agency": OTHER}, "new"),
    "reject": ([], {"reason": "trùng lặp"}, "rejected"),
}


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def source_key(server: RunningServer) -> str:
    return make_key(server, "source", source="hue-s")


@pytest.fixture
def operator_key(server: RunningServer) -> str:
    return make_key(server, "operator")


@pytest.fixture
def leader_key(server: RunningServer) -> str:
    return make_key(server, "leader")


@pytest.fixture
def officials(server: RunningServer) -> list[str]:
    """Two officials of agency ioc, whom tickets are assigned to."""
    make_user(server, "tran.b", "Trần Thị B")
    make_user(server, "le.c", "Lê C")
    return ["tran.b", "le.c"]


@pytest.fixture
def ioc_key(server: RunningServer) -> str:
    return make_key(server, "agency", agency="ioc")


@pytest.fixture
def other_key(server: RunningServer, second_agency: str) -> str:
    return make_key(server, "agency", agency=second_agency)


@pytest.fixture
def second_agency(server: RunningServer) -> str:
    """Agency so-xd, responsible for xay_dung reports anywhere (routing reloaded)."""
    with psycopg.connect(server.db_url) as conn:
        conn.execute("INSERT INTO agencies (code, name_vi) VALUES (%s, 'Sở Xây dựng')", (OTHER,))
        conn.execute(
            "INSERT INTO responsibility_rules (category, agency) VALUES ('xay_dung', %s)",
            (OTHER,),
        )
    server.run(server.platform.reload_routing(force=True))
    return OTHER


@pytest.fixture
def two_queues(
    client: httpx.Client, source_key: str, second_agency: str, server: RunningServer
) -> tuple[int, int]:
    """One ticket in the ioc queue, one in so-xd's: (ioc ticket, so-xd ticket)."""
    post(client, source_key, report(1))
    post(client, source_key, report(2, category="xay_dung"))
    return ticket_of(server, 1), ticket_of(server, 2)


@pytest.fixture
def live(server: RunningServer) -> Iterator[Any]:
    """Open live-feed sockets with a key; all closed at the end."""
    with contextlib.ExitStack() as sockets:

        def open_feed(key: str, in_query: bool = False) -> ClientConnection:
            url = f"{server.ws_url}/v1/tickets/ws"
            if in_query:
                return sockets.enter_context(connect(f"{url}?api_key={key}", open_timeout=5))
            return sockets.enter_context(connect(url, additional_headers=auth(key), open_timeout=5))

        yield open_feed


# --- one ticket ----------------------------------------------------------------------------


def test_ticket_shows_routing_deadline_and_report_but_not_the_reporter(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer
) -> None:
    post(client, source_key, report(1))
    ticket = ticket_of(server, 1)
    body = client.get(f"/v1/tickets/{ticket}", headers=auth(operator_key)).json()
    assert body["id"] == ticket
    assert (body["category"], body["state"], body["agency"]) == ("moi_truong", "new", "ioc")
    assert body["routing"]["how"] == "no_boundaries"
    assert (body["lon"], body["lat"]) == (107.51, 16.46)
    opened = datetime.fromisoformat(body["opened_at"])
    assert opened == datetime.fromisoformat(OLD)
    assert datetime.fromisoformat(body["deadline_at"]) == opened + timedelta(hours=48)
    assert body["overdue"] is True
    assert body["report_count"] == 1 and body["assignee"] is None and body["closed_at"] is None
    assert body["description"] == "Phản ánh số 1" and body["address"] == "1 Lê Lợi, Huế"
    assert body["media_urls"] == ["https://example.org/1.jpg"]
    for key in ("jurisdiction_code", "jurisdiction_level", "updated_at"):
        assert key in body
    text = json.dumps(body, ensure_ascii=False)
    assert "reporter" not in text and "0900000001" not in text and "Nguyễn Văn A" not in text


def test_unknown_ticket_is_404(client: httpx.Client, operator_key: str) -> None:
    for path in ("/v1/tickets/987654", "/v1/tickets/987654/history"):
        assert_error(client.get(path, headers=auth(operator_key)), 404, "not_found")
    assert_error(act(client, operator_key, 987654, "start"), 404, "not_found")


def test_ticket_id_must_be_a_number(client: httpx.Client, operator_key: str) -> None:
    error = assert_error(
        client.get("/v1/tickets/abc", headers=auth(operator_key)), 422, "invalid_input"
    )
    assert "ticket_id" in error["message"]


# --- the queue: filters --------------------------------------------------------------------


def test_filter_by_state(
    client: httpx.Client,
    source_key: str,
    operator_key: str,
    server: RunningServer,
    officials: list[str],
) -> None:
    post_many(client, source_key, [report(n) for n in range(1, 4)])
    first, second, third = (ticket_of(server, n) for n in range(1, 4))
    moved(client, operator_key, second, "start")
    moved(client, operator_key, third, "assign", assignee="tran.b")
    assert listed(client, operator_key, state="in_progress") == [second]
    assert sorted(listed(client, operator_key, state=["new", "assigned"])) == [first, third]


def test_filter_overdue(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer
) -> None:
    post(client, source_key, report(1))  # opened long ago: overdue
    post(client, source_key, report(2, at=fresh()))  # due in two days
    post(client, source_key, report(3))  # long ago, but closed: not overdue
    late, on_time, closed = (ticket_of(server, n) for n in (1, 2, 3))
    for action in ("start", "resolve", "close"):
        moved(client, operator_key, closed, action)
    assert listed(client, operator_key, overdue="true") == [late]
    assert sorted(listed(client, operator_key, overdue="false")) == sorted([on_time, closed])
    assert (
        client.get(f"/v1/tickets/{on_time}", headers=auth(operator_key)).json()["overdue"] is False
    )


def test_filter_by_category(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer
) -> None:
    post_many(client, source_key, [report(1), report(2, category="cay_xanh")])
    assert listed(client, operator_key, category="cay_xanh") == [ticket_of(server, 2)]


def test_filter_by_bbox(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer
) -> None:
    post_many(client, source_key, [report(n) for n in range(1, 6)])  # lon 107.51 … 107.55
    inside = listed(client, operator_key, bbox="107.515,16.4,107.535,16.5")
    assert sorted(inside) == [ticket_of(server, 2), ticket_of(server, 3)]


def test_since_and_until_without_offset_are_vietnam_time(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer
) -> None:
    post(client, source_key, report(1, at="2025-08-01T07:45:00+07:00"))  # 00:45 UTC
    ticket = ticket_of(server, 1)
    assert listed(client, operator_key, since="2025-08-01T07:45:00") == [ticket]
    assert listed(client, operator_key, since="2025-08-01T07:46:00") == []
    assert listed(client, operator_key, until="2025-08-01T07:46:00") == [ticket]
    assert listed(client, operator_key, until="2025-08-01T07:45:00") == []  # until is exclusive
    assert listed(client, operator_key, since="2025-08-01T00:45:00Z") == [ticket]
    assert listed(client, operator_key, since="2025-08-01", until="2025-08-02") == [ticket]


def test_operator_filters_by_agency(
    client: httpx.Client, operator_key: str, two_queues: tuple[int, int]
) -> None:
    ioc_ticket, other_ticket = two_queues
    assert listed(client, operator_key, agency=OTHER) == [other_ticket]
    assert listed(client, operator_key, agency="ioc") == [ioc_ticket]
    assert sorted(listed(client, operator_key)) == sorted(two_queues)


@pytest.mark.parametrize(
    ("params", "field", "hint"),
    [
        ({"state": "done"}, "state", "in_progress"),
        ({"overdue": "yes"}, "overdue", "true, false"),
        ({"category": "rac"}, "category", "moi_truong"),
        ({"bbox": "107.5,16.4,107.6"}, "bbox", "min_lon,min_lat,max_lon,max_lat"),
        ({"bbox": "107.6,16.4,107.5,16.5"}, "bbox", "min_lon ≤ max_lon"),
        ({"bbox": "a,b,c,d"}, "bbox", "min_lon,min_lat,max_lon,max_lat"),
        ({"since": "yesterday"}, "since", "ISO 8601"),
        ({"until": "2025-13-01"}, "until", "ISO 8601"),
        ({"since": "2025-08-02", "until": "2025-08-01"}, "until", "before since"),
        ({"limit": "0"}, "limit", "1 to 500"),
        ({"limit": "501"}, "limit", "1 to 500"),
        ({"limit": "ten"}, "limit", "1 to 500"),
        ({"cursor": "not-a-cursor"}, "cursor", "'next' value"),
        ({"cursor": base64.urlsafe_b64encode(b"[null, 1e400]").decode()}, "cursor", "'next'"),
        (
            {"cursor": base64.urlsafe_b64encode(b"[null, 99999999999999999999]").decode()},
            "cursor",
            "'next'",
        ),
        ({"overdue": ["true", "false"]}, "overdue", "once"),
        ({"stat": "new"}, "stat", "accepted: state, overdue"),
    ],
)
def test_bad_filter_is_422_naming_the_parameter(
    client: httpx.Client, operator_key: str, params: dict[str, Any], field: str, hint: str
) -> None:
    answer = client.get("/v1/tickets", params=params, headers=auth(operator_key))
    error = assert_error(answer, 422, "invalid_input")
    assert error["details"][0]["field"] == field
    assert error["message"].startswith(f"{field}: ") and hint in error["message"], error


# --- the queue: order and pagination -------------------------------------------------------


def test_pages_follow_the_deadline_without_duplicates_or_gaps(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer
) -> None:
    # Many tickets share a deadline (ties broken by id) and a few have none (they come last).
    times = ["2025-08-01T07:45:00+07:00", "2025-08-02T09:00:00+07:00", fresh()]
    post_many(client, source_key, [report(n, at=times[n % 3]) for n in range(1, 24)])
    with psycopg.connect(server.db_url) as conn:
        conn.execute(
            "UPDATE tickets SET deadline_at = NULL WHERE id IN"
            " (SELECT id FROM tickets ORDER BY id DESC LIMIT 4)"
        )
        rows = conn.execute(
            "SELECT id FROM tickets ORDER BY deadline_at ASC NULLS LAST, id"
        ).fetchall()
    expected = [r[0] for r in rows]
    seen: list[int] = []
    pages = 0
    cursor = None
    while True:
        params = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/tickets", params=params, headers=auth(operator_key)).json()
        seen += [t["id"] for t in page["tickets"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
        assert len(page["tickets"]) == 5
    assert seen == expected  # same order, no duplicates, no gaps
    assert pages == 5  # 23 tickets: four full pages and one of three
    overdue = [
        t["overdue"]
        for t in client.get("/v1/tickets", headers=auth(operator_key)).json()["tickets"]
    ]
    assert overdue == sorted(overdue, reverse=True)  # overdue first


def test_last_full_page_has_no_next(
    client: httpx.Client, source_key: str, operator_key: str
) -> None:
    post_many(client, source_key, [report(n) for n in range(1, 5)])
    page = client.get("/v1/tickets", params={"limit": 4}, headers=auth(operator_key)).json()
    assert len(page["tickets"]) == 4 and page["next"] is None


def test_filters_hold_across_pages(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer
) -> None:
    post_many(
        client,
        source_key,
        [report(n, category="cay_xanh" if n % 2 else "moi_truong") for n in range(1, 12)],
    )
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "category": "cay_xanh"}
        page = client.get(
            "/v1/tickets",
            params=params | ({"cursor": cursor} if cursor else {}),
            headers=auth(operator_key),
        ).json()
        seen += [t["id"] for t in page["tickets"]]
        assert all(t["category"] == "cay_xanh" for t in page["tickets"])
        if (cursor := page["next"]) is None:
            break
    assert sorted(seen) == sorted(ticket_of(server, n) for n in range(1, 12, 2))


# --- actions -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(ACTIONS))
def test_each_legal_action(
    client: httpx.Client,
    source_key: str,
    operator_key: str,
    second_agency: str,
    server: RunningServer,
    officials: list[str],
    action: str,
) -> None:
    post(client, source_key, report(1))
    ticket = ticket_of(server, 1)
    path, body, target = ACTIONS[action]
    for step, extra in path:
        moved(client, operator_key, ticket, step, **extra)
    after = moved(client, operator_key, ticket, action, **body)
    assert after["id"] == ticket and after["state"] == target
    assert after == client.get(f"/v1/tickets/{ticket}", headers=auth(operator_key)).json()
    assert (after["closed_at"] is not None) == (target in ("closed", "rejected"))
    assert after["agency"] == (second_agency if action == "transfer" else "ioc")
    if action == "assign":
        assert after["assignee"] == "tran.b"
    last = client.get(f"/v1/tickets/{ticket}/history", headers=auth(operator_key)).json()
    assert last["events"][-1]["action"] == action and last["events"][-1]["to_state"] == target


def test_history_records_every_move_in_order(
    client: httpx.Client,
    source_key: str,
    second_agency: str,
    server: RunningServer,
    officials: list[str],
) -> None:
    post(client, source_key, report(1))
    ticket = ticket_of(server, 1)
    operator = make_key(server, "operator")  # label "test operator"
    moved(client, operator, ticket, "assign", assignee="le.c")
    moved(client, operator, ticket, "start")
    moved(client, operator, ticket, "resolve")
    closed = moved(client, operator, ticket, "close")
    assert closed["closed_at"] is not None
    reopened = moved(client, operator, ticket, "reopen", reason="chưa xử lý xong")
    assert reopened["closed_at"] is None and reopened["assignee"] == "le.c"
    handed = moved(client, operator, ticket, "transfer", reason="sai lĩnh vực", to_agency=OTHER)
    assert handed["assignee"] is None  # the new agency assigns its own people
    history = client.get(f"/v1/tickets/{ticket}/history", headers=auth(operator)).json()
    assert history["ticket"] == ticket
    events = history["events"]
    assert [(e["action"], e["from_state"], e["to_state"]) for e in events] == [
        ("open", None, "new"),
        ("assign", "new", "assigned"),
        ("start", "assigned", "in_progress"),
        ("resolve", "in_progress", "resolved"),
        ("close", "resolved", "closed"),
        ("reopen", "closed", "reopened"),
        ("transfer", "reopened", "new"),
    ]
    assert events[0]["actor"] == "router" and events[0]["to_agency"] == "ioc"
    assert {e["actor"] for e in events[1:]} == {"test operator"}
    assert events[1]["note"] == "assignee: Lê C (le.c)"
    assert events[5]["note"] == "chưa xử lý xong"
    assert (events[6]["from_agency"], events[6]["to_agency"]) == ("ioc", OTHER)
    assert events[6]["note"] == "sai lĩnh vực"
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert times[1:] == sorted(times[1:])


def test_actor_without_label_is_role_and_prefix(
    client: httpx.Client, source_key: str, server: RunningServer
) -> None:
    async def unlabelled() -> tuple[str, str]:
        async with server.platform.pool.connection() as conn:
            key, _ = await create_key(conn, "operator", label="")
            return key.token, key.prefix

    token, prefix = server.run(unlabelled())
    post(client, source_key, report(1))
    ticket = ticket_of(server, 1)
    moved(client, token, ticket, "start")
    events = client.get(f"/v1/tickets/{ticket}/history", headers=auth(token)).json()["events"]
    assert events[-1]["actor"] == f"operator:{prefix}"


@pytest.mark.parametrize(
    ("path", "action", "body", "state"),
    [
        ([], "close", {}, "new"),
        ([], "resume", {}, "new"),
        ([], "wait", {"reason": "chờ"}, "new"),
        ([("start", {})], "start", {}, "in_progress"),
        ([("start", {}), ("resolve", {})], "reject", {"reason": "x"}, "resolved"),
        ([("reject", {"reason": "spam"})], "reopen", {"reason": "x"}, "rejected"),
        ([("start", {}), ("resolve", {}), ("close", {})], "assign", {"assignee": "B"}, "closed"),
    ],
)
def test_illegal_move_is_409_quoting_the_state(
    client: httpx.Client,
    source_key: str,
    operator_key: str,
    server: RunningServer,
    path: list[tuple[str, dict[str, str]]],
    action: str,
    body: dict[str, str],
    state: str,
) -> None:
    post(client, source_key, report(1))
    ticket = ticket_of(server, 1)
    for step, extra in path:
        moved(client, operator_key, ticket, step, **extra)
    error = assert_error(act(client, operator_key, ticket, action, **body), 409, "conflict")
    assert f"is {state!r}" in error["message"] and repr(action) in error["message"]
    events = client.get(f"/v1/tickets/{ticket}/history", headers=auth(operator_key)).json()
    assert len(events["events"]) == 1 + len(path)  # nothing recorded


@pytest.mark.parametrize(
    ("body", "status", "code", "hint"),
    [
        ({"action": "fix"}, 422, "invalid_input", "accepted: assign, start"),
        ({"action": "wait"}, 422, "invalid_input", "needs a reason"),
        ({"action": "assign", "assignee": "  "}, 422, "invalid_input", "needs an assignee"),
        ({"action": "transfer", "reason": "x"}, 422, "invalid_input", "to_agency"),
        (
            {"action": "transfer", "reason": "x", "to_agency": "nowhere"},
            422,
            "invalid_input",
            "'nowhere' is not a known agency",
        ),
        ({"action": "transfer", "reason": "x", "to_agency": "ioc"}, 409, "conflict", "already"),
        ({"action": "start", "colour": "red"}, 422, "invalid_input", "colour"),
        ({"reason": "x"}, 422, "invalid_input", "action"),
        ({"action": 5}, 422, "invalid_input", "action"),
    ],
)
def test_bad_action_request(
    client: httpx.Client,
    source_key: str,
    operator_key: str,
    server: RunningServer,
    body: dict[str, Any],
    status: int,
    code: str,
    hint: str,
) -> None:
    post(client, source_key, report(1))
    ticket = ticket_of(server, 1)
    answer = client.post(f"/v1/tickets/{ticket}/actions", json=body, headers=auth(operator_key))
    assert hint in assert_error(answer, status, code)["message"]


def test_action_body_that_is_not_json_is_400(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer
) -> None:
    post(client, source_key, report(1))
    answer = client.post(
        f"/v1/tickets/{ticket_of(server, 1)}/actions",
        content=b"{action: start",
        headers=auth(operator_key) | {"Content-Type": "application/json"},
    )
    assert_error(answer, 400, "malformed_body")


# --- who may do what -----------------------------------------------------------------------


def _endpoints(ticket: int) -> list[tuple[str, str]]:
    return [
        ("GET", "/v1/tickets"),
        ("GET", f"/v1/tickets/{ticket}"),
        ("GET", f"/v1/tickets/{ticket}/history"),
        ("POST", f"/v1/tickets/{ticket}/actions"),
    ]


def test_no_key_is_401_everywhere(
    client: httpx.Client, source_key: str, server: RunningServer
) -> None:
    post(client, source_key, report(1))
    for method, path in _endpoints(ticket_of(server, 1)):
        answer = client.request(method, path, json={"action": "start"})
        assert_error(answer, 401, "unauthenticated")


def test_source_key_is_403_everywhere(
    client: httpx.Client, source_key: str, server: RunningServer
) -> None:
    post(client, source_key, report(1))
    for method, path in _endpoints(ticket_of(server, 1)):
        answer = client.request(method, path, json={"action": "start"}, headers=auth(source_key))
        assert_error(answer, 403, "forbidden")


def test_leader_reads_everything_but_cannot_act(
    client: httpx.Client, leader_key: str, two_queues: tuple[int, int]
) -> None:
    assert sorted(listed(client, leader_key)) == sorted(two_queues)
    for ticket in two_queues:
        assert client.get(f"/v1/tickets/{ticket}", headers=auth(leader_key)).status_code == 200
        history = client.get(f"/v1/tickets/{ticket}/history", headers=auth(leader_key))
        assert history.status_code == 200
        error = assert_error(act(client, leader_key, ticket, "start"), 403, "forbidden")
        assert "'leader'" in error["message"]


@pytest.mark.parametrize("role", ["admin", "operator"])
def test_admin_and_operator_act_on_any_agency(
    client: httpx.Client, server: RunningServer, two_queues: tuple[int, int], role: str
) -> None:
    key = make_key(server, role)
    for ticket in two_queues:
        assert moved(client, key, ticket, "start")["state"] == "in_progress"


def test_agency_lists_only_its_own_queue(
    client: httpx.Client, ioc_key: str, other_key: str, two_queues: tuple[int, int]
) -> None:
    ioc_ticket, other_ticket = two_queues
    assert listed(client, ioc_key) == [ioc_ticket]
    assert listed(client, other_key) == [other_ticket]
    assert listed(client, other_key, agency=OTHER) == [other_ticket]
    error = assert_error(
        client.get("/v1/tickets", params={"agency": "ioc"}, headers=auth(other_key)),
        403,
        "forbidden",
    )
    assert repr(OTHER) in error["message"]


@pytest.mark.parametrize("path", ["", "/history"])
def test_agency_gets_404_reading_another_agencys_ticket(
    client: httpx.Client, ioc_key: str, other_key: str, two_queues: tuple[int, int], path: str
) -> None:
    ioc_ticket, other_ticket = two_queues
    assert client.get(f"/v1/tickets/{ioc_ticket}{path}", headers=auth(ioc_key)).status_code == 200
    assert_error(
        client.get(f"/v1/tickets/{other_ticket}{path}", headers=auth(ioc_key)), 404, "not_found"
    )
    assert_error(
        client.get(f"/v1/tickets/{ioc_ticket}{path}", headers=auth(other_key)), 404, "not_found"
    )


@pytest.mark.parametrize("action", list(ACTIONS))
def test_agency_gets_404_acting_on_another_agencys_ticket(
    client: httpx.Client,
    other_key: str,
    operator_key: str,
    two_queues: tuple[int, int],
    server: RunningServer,
    action: str,
) -> None:
    ioc_ticket, _ = two_queues
    path, body, _ = ACTIONS[action]
    for step, extra in path:  # bring it where the action would be legal
        moved(client, operator_key, ioc_ticket, step, **extra)
    if action == "transfer":
        body = {**body, "to_agency": "ioc"}
    before = client.get(f"/v1/tickets/{ioc_ticket}", headers=auth(operator_key)).json()
    error = assert_error(act(client, other_key, ioc_ticket, action, **body), 404, "not_found")
    assert str(ioc_ticket) in error["message"]
    after = client.get(f"/v1/tickets/{ioc_ticket}", headers=auth(operator_key)).json()
    assert after == before


def test_agency_works_its_own_ticket_until_it_transfers_it(
    server: RunningServer,
    client: httpx.Client,
    other_key: str,
    ioc_key: str,
    two_queues: tuple[int, int],
) -> None:
    _, mine = two_queues
    make_user(server, "ky.su.d", "Kỹ sư D", agency=OTHER)
    assert moved(client, other_key, mine, "assign", assignee="ky.su.d")["state"] == "assigned"
    handed = moved(
        client, other_key, mine, "transfer", reason="không thuộc thẩm quyền", to_agency="ioc"
    )
    assert handed["agency"] == "ioc"
    assert_error(client.get(f"/v1/tickets/{mine}", headers=auth(other_key)), 404, "not_found")
    assert_error(act(client, other_key, mine, "start"), 404, "not_found")
    assert mine in listed(client, ioc_key)


# --- the live feed -------------------------------------------------------------------------


def test_feed_announces_a_new_ticket_and_its_changes(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer, live: Any
) -> None:
    feed = live(operator_key)
    post(client, source_key, report(1))
    ticket = ticket_of(server, 1)
    message = receive(feed, timeout=1.0)
    assert message["ticket"] == ticket
    assert (message["agency"], message["state"], message["category"]) == (
        "ioc",
        "new",
        "moi_truong",
    )
    moved(client, operator_key, ticket, "start")
    changed = receive(feed, timeout=1.0)
    assert changed["seq"] > message["seq"]  # numbered in commit order (the resume cursor)
    assert changed == message | {"state": "in_progress", "seq": changed["seq"]}


def test_feed_takes_the_key_in_the_query(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer, live: Any
) -> None:
    feed = live(operator_key, in_query=True)
    post(client, source_key, report(1))
    assert receive(feed)["ticket"] == ticket_of(server, 1)


def test_agency_feed_carries_only_its_own_tickets(
    client: httpx.Client,
    source_key: str,
    other_key: str,
    operator_key: str,
    server: RunningServer,
    live: Any,
) -> None:
    feed, everything = live(other_key), live(operator_key)
    post(client, source_key, report(1))  # → ioc
    post(client, source_key, report(2, category="xay_dung"))  # → so-xd
    ioc_ticket, mine = ticket_of(server, 1), ticket_of(server, 2)
    # Notifications arrive in commit order: had the ioc ticket reached this feed, it came first.
    assert receive(feed)["ticket"] == mine
    assert [receive(everything)["ticket"] for _ in range(2)] == [ioc_ticket, mine]
    moved(client, operator_key, ioc_ticket, "start")
    moved(client, operator_key, mine, "start")
    assert receive(feed) == {
        "ticket": mine,
        "agency": OTHER,
        "state": "in_progress",
        "category": "xay_dung",
        "reports": 1,
        "seq": 4,  # the fourth notice committed: two tickets opened, two started
    }


def test_agency_feed_hears_a_ticket_leave_and_arrive(
    client: httpx.Client,
    source_key: str,
    other_key: str,
    ioc_key: str,
    operator_key: str,
    server: RunningServer,
    live: Any,
) -> None:
    post(client, source_key, report(2, category="xay_dung"))
    mine = ticket_of(server, 2)
    leaving, arriving, everything = live(other_key), live(ioc_key), live(operator_key)
    moved(client, operator_key, mine, "transfer", reason="sai", to_agency="ioc")
    gone = receive_ticket(leaving, mine)
    assert (gone["from_agency"], gone["agency"], gone["state"]) == (OTHER, "ioc", "new")
    came = receive_ticket(arriving, mine)
    assert "from_agency" not in came and came["agency"] == "ioc"
    assert "from_agency" not in receive_ticket(everything, mine)
    moved(client, operator_key, mine, "start")
    # Operators see each change once: the departure notice is for the old agency only.
    assert receive_ticket(everything, mine)["state"] == "in_progress"


@pytest.mark.parametrize("key", [None, "source"])
def test_feed_refuses_missing_and_source_keys(
    server: RunningServer, source_key: str, key: str | None
) -> None:
    url = f"{server.ws_url}/v1/tickets/ws"
    headers = auth(source_key) if key else {}
    with (
        connect(url, additional_headers=headers, open_timeout=5) as socket,
        pytest.raises(ConnectionClosed) as closed,
    ):
        socket.recv(timeout=2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_feed_survives_a_lost_database_connection(
    client: httpx.Client, source_key: str, operator_key: str, server: RunningServer, live: Any
) -> None:
    feed = live(operator_key)
    hub = server.platform.hub
    old = hub.backend_pid
    with psycopg.connect(server.db_url) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (old,)).fetchone() == (True,)
    new = server.run(asyncio.wait_for(hub.wait_listening(other_than=old), 10))
    assert new != old
    # Nothing was missed (the hub replays the log from where it was): no resync, the feed goes on.
    post(client, source_key, report(1))
    assert receive(feed)["ticket"] == ticket_of(server, 1)


# --- the hub on its own ---------------------------------------------------------------------


def test_hub_drops_a_slow_subscriber_without_holding_up_others(db_url: str) -> None:
    async def scenario() -> dict[str, Any]:
        hub = LiveHub(db_url, queue_size=2)
        await hub.start()
        try:
            fast, slow = hub.subscribe(lambda m: True), hub.subscribe(lambda m: True)
            odd = hub.subscribe(lambda m: m["ticket"] % 2 == 1)
            fast_messages, odd_messages = aiter(fast), aiter(odd)
            heard = []
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                for n in range(1, 4):
                    payload = json.dumps({"ticket": n})
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    # The fast one keeps up; the slow one never reads.
                    heard.append(await asyncio.wait_for(anext(fast_messages), 2))
            return {
                "fast": heard,
                "slow": [text async for text in slow],  # ends at once: dropped, backlog gone
                "slow_dropped": slow.dropped,
                "odd": [await asyncio.wait_for(anext(odd_messages), 2) for _ in range(2)],
                "odd_dropped": odd.dropped,
                "subscribers": hub.subscribers,
            }
        finally:
            await hub.stop()

    result = asyncio.run(scenario())
    assert [json.loads(t)["ticket"] for t in result["fast"]] == [1, 2, 3]
    assert result["slow_dropped"] is True and result["slow"] == []
    assert [json.loads(t)["ticket"] for t in result["odd"]] == [1, 3]  # its filter: 2 never queued
    assert result["odd_dropped"] is False and result["subscribers"] == 2
