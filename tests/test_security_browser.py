"""Forgery from a page on another port of the same host, in a real headless chromium.

The operator's browser is logged in to the platform. A second, hostile HTTP server on another
port of 127.0.0.1 serves pages that try what such a page can do: no-cors fetches with the
cookie and a text/plain body, WebSockets to the live feeds, and plain form posts to /login and
/logout. Another port is the same site, so the SameSite=Strict cookie goes along: only the
CSRF token and the Origin checks stand in the way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest

from ioc.alerts.records import NewAlert, raise_alerts
from ioc.settings import Settings
from tests.conftest import RunningServer, auth, free_port, log_in, make_key, make_user

OLD = "2025-08-01T07:45:00+07:00"

ATTACK = """<!doctype html><html><body><script>
const T = "{target}", W = "{ws}";
window.results = {{ fetches: [], sockets: {{}}, fetched: false }};
function listen(path) {{
  const seen = {{ opened: false, messages: 0, code: null }};
  window.results.sockets[path] = seen;
  const socket = new WebSocket(W + path);
  socket.onopen = () => {{ seen.opened = true; }};
  socket.onmessage = () => {{ seen.messages += 1; }};
  socket.onclose = (event) => {{ seen.code = event.code; }};
}}
async function forge() {{
  const tries = [
    [T + "/v1/tickets/{ticket}/actions",
     JSON.stringify({{ action: "assign", assignee: "Kẻ giả mạo" }}), "text/plain"],
    [T + "/v1/tickets/{ticket}/actions",
     new Blob([JSON.stringify({{ action: "start" }})]), null],
    [T + "/v1/alerts/{alert}/ack", "", "text/plain"],
    [T + "/v1/silences",
     JSON.stringify({{ matchers: {{ agency: "ioc" }}, ends_at: "{ends}" }}), "text/plain"],
  ];
  for (const [url, body, kind] of tries) {{
    const options = {{ method: "POST", mode: "no-cors", credentials: "include", body }};
    if (kind) options.headers = {{ "Content-Type": kind }};
    try {{ await fetch(url, options); window.results.fetches.push("sent"); }}
    catch (problem) {{ window.results.fetches.push("failed: " + problem); }}
  }}
  try {{
    const answer = await fetch(T + "/session", {{ credentials: "include" }});
    window.results.session = await answer.text();
  }} catch (problem) {{ window.results.session = "unreadable"; }}
  window.results.fetched = true;
}}
listen("/v1/tickets/ws");
listen("/v1/wall/ws");
listen("/v1/alerts/ws");
forge();
</script></body></html>"""

FORM = """<!doctype html><html><body>
<form method="post" action="{target}{path}">{fields}</form>
<script>document.forms[0].submit();</script></body></html>"""

DONE = """window.results && window.results.fetched
  && Object.values(window.results.sockets).every((s) => s.code !== null)"""


class Attacker:
    """A small HTTP server on another port of 127.0.0.1 serving fixed pages."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "not here").encode()
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"map_tiles": "none"})


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    hostile = Attacker()
    yield hostile
    hostile.close()


@pytest.fixture
def operator_key(server: RunningServer) -> str:
    return make_key(server, "operator")


def report(n: int) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"F-{n}",
        "category": "moi_truong",
        "description": f"Rác thải số {n}",
        "lon": 107.50 + n * 0.01,
        "lat": 16.46,
        "occurred_at": OLD,
        "address": f"{n} Lê Lợi, Huế",
    }


def new_ticket(server: RunningServer, client: httpx.Client, source_key: str, n: int) -> int:
    answer = client.post("/v1/events", json=report(n), headers=auth(source_key))
    assert answer.status_code == 201, answer.text
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (f"F-{n}",)
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def new_alert(server: RunningServer) -> int:
    async def work() -> list[int]:
        alert = NewAlert(
            subject_kind="sensor",
            subject_id="HUE-TS-001",
            rule="congestion",
            level="warning",
            severity="warning",
            agency="ioc",
            title="Ùn tắc bất thường",
            lon=107.58,
            lat=16.46,
        )
        async with server.platform.pool.connection() as conn, conn.transaction():
            return await raise_alerts(conn, [alert], datetime.now(UTC), 3600)

    [alert] = server.run(work())
    return int(alert)


def logged_in(page: Any, server: RunningServer) -> bool:
    """Whether the browser's cookie still authenticates (asked from the platform's origin)."""
    answer = page.context.request.get(f"{server.url}/v1/tickets")
    return bool(answer.status == 200)


def test_a_page_on_another_port_cannot_act_or_read_the_feeds(
    page: Any,
    server: RunningServer,
    client: httpx.Client,
    source_key: str,
    operator_key: str,
    attacker: Attacker,
) -> None:
    ticket = new_ticket(server, client, source_key, 1)
    alert = new_alert(server)
    log_in(page, server, operator_key)
    assert logged_in(page, server)
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    attacker.pages["/attack.html"] = ATTACK.format(
        target=server.url, ws=server.ws_url, ticket=ticket, alert=alert, ends=ends
    )
    page.goto(f"{attacker.url}/attack.html")
    page.wait_for_function(DONE, timeout=20_000)
    # A change the feeds would carry, had they stayed open.
    new_ticket(server, client, source_key, 2)
    results = page.evaluate("window.results")

    assert results["fetches"] == ["sent"] * 4  # sent, with the cookie, and refused
    assert "csrf_token" not in results["session"]
    for path, seen in results["sockets"].items():
        assert seen["messages"] == 0, path
        assert seen["code"] == 1008, (path, seen)

    headers = auth(operator_key)
    state = client.get(f"/v1/tickets/{ticket}", headers=headers).json()
    assert state["state"] == "new" and state.get("assignee") is None
    assert client.get(f"/v1/alerts/{alert}", headers=headers).json()["acked_at"] is None
    assert client.get("/v1/silences", headers=headers).json() == []
    assert logged_in(page, server)


def test_a_form_on_another_port_cannot_log_the_operator_in_or_out(
    page: Any, server: RunningServer, operator_key: str, attacker: Attacker
) -> None:
    session = log_in(page, server, operator_key)
    intruder = make_key(server, "admin")
    attacker.pages["/login.html"] = FORM.format(
        target=server.url,
        path="/login",
        fields=f'<input name="key" value="{intruder}"><input name="next" value="/wall">',
    )
    attacker.pages["/logout.html"] = FORM.format(target=server.url, path="/logout", fields="")

    for name in ("/login.html", "/logout.html"):
        # The form's POST, not a favicon or other GET the page may make to the server.
        with page.expect_response(
            lambda r: r.url.startswith(server.url) and r.request.method == "POST"
        ) as posted:
            page.goto(f"{attacker.url}{name}")
        assert posted.value.status == 403, name
        cookies = {c["name"]: c["value"] for c in page.context.cookies(server.url)}
        assert cookies.get("ioc_session") == session, name  # not replaced, not cleared
        assert logged_in(page, server)

    with psycopg.connect(server.db_url) as conn:
        rows = conn.execute("SELECT key_id, revoked_at FROM sessions").fetchall()
    assert len(rows) == 1 and rows[0][1] is None  # no session for the intruder's key


def test_the_operators_own_page_still_acts_and_logs_out(
    page: Any, server: RunningServer, client: httpx.Client, source_key: str, operator_key: str
) -> None:
    """Control: the same browser, on the platform's own page, passes every check."""
    ticket = new_ticket(server, client, source_key, 1)
    make_user(server, "to.1", "Tổ 1")
    log_in(page, server, operator_key)
    page.goto(f"{server.url}/agencies/ioc")
    page.wait_for_function("document.body.dataset.loaded === 'true'", timeout=15_000)
    done = page.evaluate(
        f"""IocCommon.request("/v1/tickets/{ticket}/actions", "/agencies/ioc", {{
              method: "POST",
              headers: {{ "Content-Type": "application/json", Accept: "application/json" }},
              body: JSON.stringify({{ action: "assign", assignee: "to.1" }}),
            }})"""
    )
    assert done["assignee"] == "to.1"
    page.click("form[action='/logout'] button")
    page.wait_for_url(f"{server.url}/login")
    assert not logged_in(page, server)
