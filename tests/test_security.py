"""Credentials and sessions against a real server: revocation of open sockets, server-side
sessions, CSRF and Origin checks, where a key may appear, failed-authentication limits, and
what is public. The forgery cases in a real browser are in test_security_browser.py."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from ioc.api.redaction import redact
from ioc.api.throttle import FailureLimiter
from ioc.auth import csrf_token
from ioc.errors import RateLimited
from ioc.settings import Settings
from ioc.store.keys import revoke_key
from ioc.store.sessions import open_session as store_session
from tests.conftest import (
    RunningServer,
    auth,
    make_key,
    make_user,
    open_session,
    start_server,
    stop_server,
)

OLD = "2025-08-01T07:45:00+07:00"
# Long enough for a socket to be re-checked several times (tests run with key_cache_s=0: every
# half second); the test waits for the close, it does not time it.
CLOSE_WAIT_S = 20


def report(n: int) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"S-{n}",
        "category": "moi_truong",
        "description": f"Rác thải số {n}",
        "lon": 107.50 + n * 0.01,
        "lat": 16.46,
        "occurred_at": OLD,
        "address": f"{n} Lê Lợi, Huế",
    }


def post(client: httpx.Client, key: str, n: int) -> int:
    answer = client.post("/v1/events", json=report(n), headers=auth(key))
    assert answer.status_code == 201, answer.text
    return n


def ticket_of(server: RunningServer, n: int) -> int:
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (f"S-{n}",)
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def revoke(server: RunningServer, key: str) -> None:
    prefix = key.split("_")[1]

    async def work() -> None:
        async with server.platform.pool.connection() as conn:
            await revoke_key(conn, prefix)

    server.run(work())


def closed_code(socket: ClientConnection) -> int | None:
    """Read until the server closes the socket; its close code."""
    deadline = time.monotonic() + CLOSE_WAIT_S
    while time.monotonic() < deadline:
        try:
            socket.recv(timeout=1)
        except TimeoutError:
            continue
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
    return None


def session_headers(server: RunningServer, key: str) -> tuple[str, dict[str, str]]:
    session = open_session(server, key)
    return session, {"Cookie": f"ioc_session={session}"}


def page_post(server: RunningServer, session: str) -> dict[str, str]:
    """What our own pages' scripts send with a POST: same origin, the session's token."""
    return {
        "Cookie": f"ioc_session={session}",
        "Origin": server.url,
        "Sec-Fetch-Site": "same-origin",
        "X-CSRF-Token": csrf_token(session),
    }


@pytest.fixture
def operator_key(server: RunningServer) -> str:
    return make_key(server, "operator")


@pytest.fixture
def ticket(client: httpx.Client, source_key: str, server: RunningServer) -> int:
    return ticket_of(server, post(client, source_key, 1))


# --- a revoked key, or an ended login, closes open sockets ----------------------------------


def test_a_revoked_gateways_socket_is_closed_and_stores_nothing_more(
    server: RunningServer, client: httpx.Client, source_key: str
) -> None:
    with connect(
        f"{server.ws_url}/v1/events/ws", additional_headers=auth(source_key), open_timeout=5
    ) as socket:
        socket.send(json.dumps(report(1)))
        assert json.loads(socket.recv(timeout=10))["accepted"] == 1
        revoke(server, source_key)
        assert closed_code(socket) == 1008
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute("SELECT count(*) FROM field_reports").fetchone()
    assert row is not None and row[0] == 1


@pytest.mark.parametrize("path", ["/v1/tickets/ws", "/v1/alerts/ws", "/v1/wall/ws"])
def test_a_revoked_keys_feed_is_closed(server: RunningServer, operator_key: str, path: str) -> None:
    with connect(f"{server.ws_url}{path}?api_key={operator_key}", open_timeout=5) as socket:
        revoke(server, operator_key)
        assert closed_code(socket) == 1008


def test_logging_out_closes_the_pages_feed(server: RunningServer, operator_key: str) -> None:
    _, cookie = session_headers(server, operator_key)
    with (
        httpx.Client(base_url=server.url) as client,
        connect(
            f"{server.ws_url}/v1/wall/ws",
            additional_headers=cookie,
            origin=server.url,
            open_timeout=5,
        ) as socket,
    ):
        answer = client.post("/logout", headers=cookie | {"Origin": server.url})
        assert answer.status_code == 303
        assert closed_code(socket) == 1008


# --- sessions ---------------------------------------------------------------------------------


def test_the_session_cookie_is_opaque_and_stored_hashed(
    server: RunningServer, client: httpx.Client, operator_key: str
) -> None:
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post(
        "/login", data={"key": operator_key, "next": "", "csrf_token": token.group(1)}
    )
    assert answer.status_code == 303
    session = client.cookies["ioc_session"]
    assert operator_key not in session and operator_key.split("_", 2)[2] not in session
    assert len(session) >= 43  # 256 random bits
    with psycopg.connect(server.db_url) as conn:
        stored = [r[0] for r in conn.execute("SELECT id_hash FROM sessions").fetchall()]
    assert len(stored) == 1 and stored[0] != session and session not in stored[0]
    # The page's own session endpoint gives the CSRF token, never the key.
    info = client.get("/session")
    assert info.status_code == 200 and operator_key not in info.text
    assert info.json()["csrf_token"] == csrf_token(session)


def test_an_expired_session_is_refused(
    server: RunningServer, client: httpx.Client, operator_key: str
) -> None:
    platform = server.platform

    async def old_session() -> str:
        who = await platform.verifier.verify(platform.pool.connection, operator_key)
        async with platform.pool.connection() as conn:
            return await store_session(
                conn, who.key_id, platform.clock.now() - timedelta(hours=2), 3600
            )

    session = server.run(old_session())
    answer = client.get("/v1/tickets", headers={"Cookie": f"ioc_session={session}"})
    assert answer.status_code == 401


def test_revoking_the_key_ends_its_sessions(
    server: RunningServer, client: httpx.Client, operator_key: str
) -> None:
    _, cookie = session_headers(server, operator_key)
    assert client.get("/v1/tickets", headers=cookie).status_code == 200
    revoke(server, operator_key)
    assert client.get("/v1/tickets", headers=cookie).status_code == 401
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute("SELECT count(*) FROM sessions WHERE revoked_at IS NULL").fetchone()
    assert row is not None and row[0] == 0


def test_a_key_is_not_a_session(client: httpx.Client, operator_key: str) -> None:
    """The old cookie held the key itself; a key in a cookie authenticates nothing now."""
    assert (
        client.get("/v1/tickets", headers={"Cookie": f"ioc_key={operator_key}"}).status_code == 401
    )
    assert (
        client.get("/v1/tickets", headers={"Cookie": f"ioc_session={operator_key}"}).status_code
        == 401
    )


# --- cross-site request forgery -------------------------------------------------------------


def test_a_cookie_request_that_changes_something_needs_the_csrf_token(
    server: RunningServer, client: httpx.Client, operator_key: str, ticket: int
) -> None:
    session, cookie = session_headers(server, operator_key)
    make_user(server, "ke.gia.mao", "Kẻ giả mạo")
    body = json.dumps({"action": "assign", "assignee": "ke.gia.mao"})
    url = f"/v1/tickets/{ticket}/actions"
    json_type = {"Content-Type": "application/json"}
    # What a page on another port of the same host could send (same site: the cookie goes).
    forged = [
        cookie | {"Content-Type": "text/plain"},
        cookie | json_type,
        cookie | json_type | {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
        cookie | json_type | {"X-CSRF-Token": csrf_token("another session")},
        page_post(server, session) | json_type | {"Origin": "http://127.0.0.1:1"},
        page_post(server, session) | json_type | {"Sec-Fetch-Site": "same-site"},
    ]
    for headers in forged:
        answer = client.post(url, content=body, headers=headers)
        assert answer.status_code == 403, (headers, answer.text)
        assert answer.json()["error"]["code"] == "cross_site_request"
    state = client.get(f"/v1/tickets/{ticket}", headers=auth(operator_key)).json()
    assert state["state"] == "new" and state.get("assignee") is None
    # Our own page's request goes through.
    mine = client.post(url, content=body, headers=page_post(server, session) | json_type)
    assert mine.status_code == 200, mine.text
    assert mine.json()["assignee"] == "ke.gia.mao"


def test_json_endpoints_refuse_other_content_types(
    server: RunningServer, client: httpx.Client, operator_key: str, ticket: int
) -> None:
    session, _ = session_headers(server, operator_key)
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for url, body in [
        (f"/v1/tickets/{ticket}/actions", {"action": "start"}),
        ("/v1/silences", {"matchers": {"agency": "ioc"}, "ends_at": ends}),
    ]:
        for kind in ("text/plain", "application/x-www-form-urlencoded", None):
            type_header = {"Content-Type": kind} if kind else {}
            for headers in (auth(operator_key), page_post(server, session)):
                answer = client.post(url, content=json.dumps(body), headers=headers | type_header)
                assert answer.status_code == 415, (url, kind, answer.text)
                assert answer.json()["error"]["code"] == "unsupported_media_type"


def test_machines_with_a_key_are_not_asked_for_a_csrf_token(
    server: RunningServer, client: httpx.Client, operator_key: str, ticket: int
) -> None:
    make_user(server, "to.1", "Tổ 1")
    answer = client.post(
        f"/v1/tickets/{ticket}/actions",
        json={"action": "assign", "assignee": "to.1"},
        headers=auth(operator_key) | {"Origin": "http://elsewhere.example"},
    )
    assert answer.status_code == 200, answer.text


def test_a_cookie_websocket_handshake_must_come_from_this_origin(
    server: RunningServer, operator_key: str
) -> None:
    _, cookie = session_headers(server, operator_key)
    for origin in ("http://127.0.0.1:1", None):
        with connect(
            f"{server.ws_url}/v1/tickets/ws",
            additional_headers=cookie,
            origin=origin,
            open_timeout=5,
        ) as socket:
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    with (
        connect(
            f"{server.ws_url}/v1/tickets/ws",
            additional_headers=cookie,
            origin=server.url,
            open_timeout=5,
        ) as socket,
        pytest.raises(TimeoutError),
    ):
        socket.recv(timeout=1)  # open, and quiet: nothing has changed


def test_login_needs_its_form_token_and_this_origin(
    server: RunningServer, client: httpx.Client, operator_key: str
) -> None:
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    data = {"key": operator_key, "next": "", "csrf_token": token.group(1)}
    refused = [
        client.post("/login", data={"key": operator_key, "next": ""}),
        client.post("/login", data=data | {"csrf_token": "x" * 43}),
        client.post("/login", data=data, headers={"Origin": "http://127.0.0.1:1"}),
        client.post("/login", data=data, headers={"Sec-Fetch-Site": "same-site"}),
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.text
        assert "ioc_session" not in answer.headers.get("set-cookie", "")
    # A form without the login cookie (another browser, or one that never opened the form):
    with httpx.Client(base_url=server.url) as stranger:
        assert stranger.post("/login", data=data).status_code == 403
    assert client.post("/login", data=data, headers={"Origin": server.url}).status_code == 303


def test_logout_from_another_site_is_refused(
    server: RunningServer, client: httpx.Client, operator_key: str
) -> None:
    _, cookie = session_headers(server, operator_key)
    for headers in ({"Origin": "http://127.0.0.1:1"}, {"Sec-Fetch-Site": "same-site"}, {}):
        answer = client.post("/logout", headers=cookie | headers)
        assert answer.status_code == 403
        assert "set-cookie" not in answer.headers
    assert client.get("/v1/tickets", headers=cookie).status_code == 200


# --- where a key may appear, and never in a log ---------------------------------------------


def test_a_key_in_the_url_is_refused_on_http_endpoints(
    client: httpx.Client, operator_key: str
) -> None:
    for path in ("/v1/tickets", "/v1/alerts", "/v1/wall/snapshot", "/metrics"):
        answer = client.get(path, params={"api_key": operator_key})
        assert answer.status_code == 401, (path, answer.text)
        assert "Authorization" in answer.json()["error"]["message"]


def test_a_key_in_the_url_still_works_where_open311_and_websockets_need_it(
    server: RunningServer, client: httpx.Client, source_key: str, operator_key: str
) -> None:
    answer = client.post(
        "/open311/v2/requests.json",
        params={"api_key": source_key},
        data={"service_code": "moi_truong", "lat": "16.46", "long": "107.58"},
    )
    assert answer.status_code == 200, answer.text
    url = f"{server.ws_url}/v1/tickets/ws?api_key={operator_key}"
    with connect(url, open_timeout=5) as ws, pytest.raises(TimeoutError):
        ws.recv(timeout=1)


def _server_lines(caplog: pytest.LogCaptureFixture) -> str:
    """The server's log lines (the test's own HTTP client logs what it sent; that is not ours)."""
    return "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )


def test_no_key_is_written_to_the_logs(
    server: RunningServer,
    client: httpx.Client,
    source_key: str,
    operator_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        client.post(
            "/open311/v2/requests.json",
            params={"api_key": source_key},
            data={"service_code": "moi_truong", "lat": "16.46", "long": "107.58"},
        )
        client.get("/v1/tickets", params={"api_key": operator_key})
        with connect(f"{server.ws_url}/v1/tickets/ws?api_key={operator_key}", open_timeout=5):
            pass
        # The server thread writes its access lines after answering: wait until they are in.
        expected = (
            "POST /open311/v2/requests.json?api_key=***",
            "GET /v1/tickets?api_key=***",
            "WebSocket /v1/tickets/ws?api_key=***",
        )
        deadline = time.monotonic() + 10
        written = _server_lines(caplog)
        while not all(line in written for line in expected) and time.monotonic() < deadline:
            time.sleep(0.01)
            written = _server_lines(caplog)
    assert all(line in written for line in expected), written
    for key in (source_key, operator_key):
        assert key not in written and key.split("_", 2)[2] not in written


def test_redaction_masks_every_api_key_value() -> None:
    assert redact("/open311/v2/requests.json?api_key=ioc_a_b&x=1") == (
        "/open311/v2/requests.json?api_key=***&x=1"
    )
    assert redact("GET /x?a=1&API_KEY=s3cret HTTP/1.1") == "GET /x?a=1&API_KEY=*** HTTP/1.1"


def test_a_nul_in_a_key_is_refused_not_a_server_error(
    server: RunningServer, client: httpx.Client
) -> None:
    answer = client.post(
        "/open311/v2/requests.json",
        content="service_code=moi_truong&lat=16.46&long=107.58&api_key=ioc_ab%00cd_x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    # Refused as input before any key is looked up, in Open311's error format.
    assert answer.status_code == 400, answer.text
    assert answer.json()[0]["code"] == 400
    answer = client.get("/v1/tickets", headers={"X-API-Key": "ioc_\u00e9\u00e9_x".encode()})
    assert answer.status_code == 401
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    login = client.post("/login", data={"key": "ioc_ab\x00cd_x", "csrf_token": token.group(1)})
    assert login.status_code == 401


# --- failed authentication is limited per client address ------------------------------------


@pytest.fixture
def strict(settings: Settings) -> Iterator[RunningServer]:
    thread, running = start_server(
        settings.model_copy(update={"auth_failure_burst": 3, "auth_failure_per_minute": 1.0})
    )
    yield running
    stop_server(thread)


def test_repeated_failed_authentication_is_answered_429(strict: RunningServer) -> None:
    with httpx.Client(base_url=strict.url) as client:
        wrong = auth("ioc_abcdef012345_wrongsecret")
        for _ in range(3):
            assert client.get("/v1/tickets", headers=wrong).status_code == 401
        limited = client.get("/v1/tickets", headers=wrong)
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # The login form answers the same way, before looking at the key.
        form = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        login = client.post(
            "/login", data={"key": "ioc_abcdef012345_x", "csrf_token": token.group(1)}
        )
        assert login.status_code == 429 and "Retry-After" in login.headers


def test_a_working_key_is_served_from_a_throttled_address(strict: RunningServer) -> None:
    # The test servers run with IOC_KEY_CACHE_S=0: every request asks the database.
    good = make_key(strict, "operator")
    with httpx.Client(base_url=strict.url) as client:
        assert client.get("/v1/tickets", headers=auth(good)).status_code == 200
        wrong = auth("ioc_abcdef012345_wrongsecret")
        for _ in range(3):
            assert client.get("/v1/tickets", headers=wrong).status_code == 401
        assert client.get("/v1/tickets", headers=wrong).status_code == 429
        # Only the guesses are held back: the key that works is still served, every time.
        for _ in range(5):
            answer = client.get("/v1/tickets", headers=auth(good))
            assert answer.status_code == 200, answer.text
        assert client.get("/v1/tickets", headers=wrong).status_code == 429
        # A key not yet seen to work is a guess like any other until the throttle refills.
        fresh = make_key(strict, "operator")
        assert client.get("/v1/tickets", headers=auth(fresh)).status_code == 429
        # Revoked, the known key is refused at once (it is still looked up), then throttled.
        revoke(strict, good)
        assert client.get("/v1/tickets", headers=auth(good)).status_code == 401
        assert client.get("/v1/tickets", headers=auth(good)).status_code == 429


def test_the_limiter_refills_over_time() -> None:
    now = [0.0]
    limiter = FailureLimiter(burst=2, per_minute=60, clock=lambda: now[0])
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        limiter.check("10.0.0.1")
    assert refused.value.retry_after_s == 1
    limiter.check("10.0.0.2")  # another address is not affected
    now[0] = 1.0
    limiter.check("10.0.0.1")


def test_the_limiter_forgets_addresses_beyond_its_bound() -> None:
    limiter = FailureLimiter(burst=5, per_minute=60, max_clients=100)
    for n in range(1000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._buckets) <= 101


# --- what is public ------------------------------------------------------------------------


def test_metrics_and_the_status_page_need_an_operator_key(
    server: RunningServer, client: httpx.Client, operator_key: str, source_key: str
) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth(source_key)).status_code == 403
    assert client.get("/metrics", headers=auth(operator_key)).status_code == 200
    page = client.get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    _, cookie = session_headers(server, operator_key)
    assert client.get("/", headers=cookie).status_code == 200


def test_public_status_is_an_explicit_setting(settings: Settings) -> None:
    thread, running = start_server(settings.model_copy(update={"public_status": True}))
    try:
        with httpx.Client(base_url=running.url) as client:
            assert client.get("/metrics").status_code == 200
            assert client.get("/").status_code == 200
    finally:
        stop_server(thread)


def test_the_limiter_is_not_spent_by_a_missing_key(strict: RunningServer) -> None:
    with httpx.Client(base_url=strict.url) as client:
        for _ in range(5):
            assert client.get("/v1/tickets").status_code == 401


def test_with_cookie_secure_the_session_cookie_is_secure_and_host_only(
    settings: Settings,
) -> None:
    thread, running = start_server(settings.model_copy(update={"cookie_secure": True}))
    try:
        key = make_key(running, "operator")
        with httpx.Client(base_url=running.url) as client:
            form = client.get("/login")
            assert "__Host-ioc_login=" in form.headers["set-cookie"]
            assert "secure" in form.headers["set-cookie"].lower()
            nonce = form.headers["set-cookie"].split(";")[0].split("=", 1)[1]
            answer = client.post(
                "/login",
                data={"key": key, "csrf_token": nonce},
                headers={"Cookie": f"__Host-ioc_login={nonce}"},
            )
        assert answer.status_code == 303, answer.text
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("__Host-ioc_session=")
        )
        lowered = cookie.lower()
        assert "secure" in lowered and "path=/" in lowered and "domain" not in lowered
    finally:
        stop_server(thread)
