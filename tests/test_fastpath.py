"""The fast path for POST /v1/events answers exactly as the router does, for good and bad input.

A request with a query string goes the normal way (through the router, the app-wide parameter
check and FastAPI's request handling), the same request without one takes the fast path; the
endpoint ignores the query, so the two answers must be equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ioc.api.fastpath import METHOD, PATH, takes_short_way
from ioc.auth import csrf_token
from ioc.settings import Settings
from tests.conftest import RunningServer, auth, make_key, open_session, start_server, stop_server
from tests.test_ingest_api import reading, report

FAST = PATH
NORMAL = PATH + "?via=router"
JSON = {"Content-Type": "application/json"}
# What an answer is compared by, besides its status and body.
HEADERS = ("content-type", "content-length", "www-authenticate", "retry-after", "allow")


def _answer(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {name: response.headers[name] for name in HEADERS if name in response.headers}
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return response.status_code, headers, body


def _both(client: httpx.Client, **request: Any) -> tuple[Any, Any]:
    fast = _answer(client.post(FAST, **request))
    normal = _answer(client.post(NORMAL, **request))
    return fast, normal


def _scope(**changes: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
    }
    return scope | changes


def test_which_requests_take_the_fast_path() -> None:
    assert takes_short_way(_scope())
    assert takes_short_way(_scope(headers=[]))  # refused by the handler, as by the route
    assert not takes_short_way(_scope(query_string=b"a=1"))
    assert not takes_short_way(_scope(root_path="/ioc"))
    assert not takes_short_way(_scope(method="GET"))
    assert not takes_short_way(_scope(path="/v1/events/"))
    assert not takes_short_way(_scope(path="/v1/events/batch"))
    assert not takes_short_way(_scope(type="websocket"))
    multipart = [(b"content-type", b"multipart/form-data; boundary=x")]
    assert not takes_short_way(_scope(headers=multipart))


def test_the_fast_path_is_a_documented_operation(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert METHOD.lower() in document["paths"][PATH]


def test_good_events_are_answered_alike(
    client: httpx.Client, source_key: str, sensors: list[str]
) -> None:
    key = auth(source_key)
    for first, second in ((FAST, NORMAL), (NORMAL, FAST)):
        minute = 1 if first == FAST else 2
        for event in (reading(sensors[0], minute), report(f"FP-{minute}")):
            stored = client.post(first, json=event, headers=key)
            again = client.post(second, json=event, headers=key)
            assert stored.status_code == 201, stored.text
            assert again.status_code == 200, again.text
            assert stored.json() | {"status": "duplicate"} == again.json()
            assert stored.json()["status"] == "accepted"
            assert ("lookup_code" in stored.json()) == (event["kind"] == "field_report")
            assert stored.headers["content-type"] == again.headers["content-type"]


@pytest.mark.parametrize(
    "name",
    [
        "no key",
        "malformed key",
        "unknown key",
        "malformed json",
        "not an object",
        "nested too deeply",
        "wrong types",
        "unknown kind",
        "missing field",
        "nul in text",
        "unregistered sensor",
        "text/plain",
        "no content type",
        "over the body limit",
        "declared over the limit",
        "empty body",
    ],
)
def test_bad_requests_are_answered_alike(
    name: str, client: httpx.Client, server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    key = auth(source_key) | JSON
    good = json.dumps(reading(sensors[0], 5)).encode()
    limit = server.platform.settings.max_body_bytes
    requests: dict[str, dict[str, Any]] = {
        "no key": {"content": good, "headers": JSON},
        "malformed key": {"content": good, "headers": auth("not-a-key") | JSON},
        "unknown key": {"content": good, "headers": auth("ioc_abcdef012345_wrong") | JSON},
        "malformed json": {"content": b'{"kind": "traffic_count",', "headers": key},
        "not an object": {"content": b"[1, 2]", "headers": key},
        "nested too deeply": {"content": b"[" * 100_000 + b"]" * 100_000, "headers": key},
        "wrong types": {
            "content": json.dumps(reading(sensors[0], 6, vehicle_count="many")).encode(),
            "headers": key,
        },
        "unknown kind": {"content": b'{"kind": "weather"}', "headers": key},
        "missing field": {"content": b'{"kind": "traffic_count"}', "headers": key},
        "nul in text": {
            "content": json.dumps(report("FP-\x00")).encode(),
            "headers": key,
        },
        "unregistered sensor": {
            "content": json.dumps(reading("NO-SUCH-SENSOR", 7)).encode(),
            "headers": key,
        },
        "text/plain": {
            "content": good,
            "headers": auth(source_key) | {"Content-Type": "text/plain"},
        },
        "no content type": {"content": good, "headers": auth(source_key)},
        "over the body limit": {"content": b" " * (limit + 1) + good, "headers": key},
        "declared over the limit": {
            "content": good,
            "headers": key | {"Content-Length": str(limit + 1)},
        },
        "empty body": {"content": b"", "headers": key},
    }
    if name == "declared over the limit":
        # A lying Content-Length: refused from the header, before the body is read. httpx
        # would send its own, so the request is written by hand.
        fast, normal = (
            _raw_post(server, path, source_key, good, limit + 1) for path in (FAST, NORMAL)
        )
        assert fast[0] == normal[0] == 413, (fast, normal)
        assert fast == normal
        return
    fast, normal = _both(client, **requests[name])
    assert fast[0] >= 400, fast
    assert fast == normal
    assert set(fast[2]) == {"error"} and {"code", "message"} <= set(fast[2]["error"])


def _raw_post(
    server: RunningServer, path: str, key: str, body: bytes, declared: int
) -> tuple[int, str]:
    """(status line, body) of a POST whose Content-Length claims ``declared`` bytes."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\n"
            f"Content-Length: {declared}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, answer = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), answer.decode()


def test_a_key_of_another_role_is_refused_alike(
    client: httpx.Client, server: RunningServer, sensors: list[str]
) -> None:
    key = auth(make_key(server, "operator"))
    fast, normal = _both(client, json=reading(sensors[0], 8), headers=key)
    assert fast[0] == 403 and fast == normal


def test_a_page_session_needs_its_csrf_token_on_both_paths(
    server: RunningServer, admin_key: str, sensors: list[str]
) -> None:
    session = open_session(server, admin_key)
    with httpx.Client(base_url=server.url, cookies={"ioc_session": session}) as client:
        fast, normal = _both(client, json=reading(sensors[0], 9))
        assert fast[0] == 403 and fast == normal
        token = {"X-CSRF-Token": csrf_token(session)}
        fast, normal = _both(client, json=reading(sensors[1], 9), headers=token)
        assert (fast[0], normal[0]) == (201, 200)  # the same event: the second is a repeat


@pytest.fixture
def strict(settings: Settings) -> Iterator[RunningServer]:
    thread, running = start_server(
        settings.model_copy(update={"auth_failure_burst": 3, "auth_failure_per_minute": 1.0})
    )
    yield running
    stop_server(thread)


def test_failed_authentications_are_throttled_alike(strict: RunningServer) -> None:
    wrong = auth("ioc_abcdef012345_wrongsecret") | JSON
    with httpx.Client(base_url=strict.url) as client:
        # One budget for the address, whichever way the requests go.
        for path in (FAST, NORMAL, FAST):
            assert client.post(path, content=b"{}", headers=wrong).status_code == 401
        fast, normal = _both(client, content=b"{}", headers=wrong)
    assert fast[0] == 429 and int(fast[1]["retry-after"]) >= 1
    assert fast == normal
