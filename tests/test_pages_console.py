"""An agency's console in a real headless chromium: its queue, map, history and actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from ioc.settings import Settings
from tests.conftest import RunningServer, auth, log_in, make_key, make_user, open_session

OLD = "2025-08-01T07:45:00+07:00"
OTHER = "so-xd"
LIVE = "document.getElementById('live').dataset.state === 'live'"
LOADED = "document.body.dataset.loaded === 'true'"


def session(server: RunningServer, key: str) -> dict[str, str]:
    """The cookie header of a browser logged in with ``key``."""
    return {"Cookie": f"ioc_session={open_session(server, key)}"}


def ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


def report(n: int, at: str, category: str = "moi_truong") -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"C-{n}",
        "category": category,
        "description": f"Đèn đường hỏng số {n}",
        "lon": 107.50 + n * 0.01,
        "lat": 16.46,
        "occurred_at": at,
        "address": f"{n} Trần Hưng Đạo, Huế",
        "reporter": {"name": "Lê Văn Kín", "phone": "0987654321"},
    }


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"map_tiles": "none"})


@pytest.fixture
def second_agency(server: RunningServer) -> str:
    """Agency so-xd, responsible for xay_dung reports (routing reloaded)."""
    with psycopg.connect(server.db_url) as conn:
        conn.execute("INSERT INTO agencies (code, name_vi) VALUES (%s, 'Sở Xây dựng')", (OTHER,))
        conn.execute(
            "INSERT INTO responsibility_rules (category, agency) VALUES ('xay_dung', %s)", (OTHER,)
        )
    server.run(server.platform.reload_routing(force=True))
    return OTHER


@pytest.fixture
def ioc_key(server: RunningServer) -> str:
    return make_key(server, "agency", agency="ioc")


@pytest.fixture
def operator_key(server: RunningServer) -> str:
    return make_key(server, "operator")


class Desk:
    """Posting reports and reading tickets back through the API."""

    def __init__(self, server: RunningServer, client: httpx.Client, source_key: str) -> None:
        self.server, self.client, self.source_key = server, client, source_key
        self.reader = make_key(server, "operator")

    def post(self, n: int, at: str, category: str = "moi_truong") -> int:
        answer = self.client.post(
            "/v1/events", json=report(n, at, category), headers=auth(self.source_key)
        )
        assert answer.status_code == 201, answer.text
        with psycopg.connect(self.server.db_url) as conn:
            row = conn.execute(
                "SELECT ticket_id FROM field_reports WHERE external_id = %s", (f"C-{n}",)
            ).fetchone()
        assert row is not None and row[0] is not None
        return int(row[0])

    def ticket(self, ticket: int) -> dict[str, Any]:
        answer = self.client.get(f"/v1/tickets/{ticket}", headers=auth(self.reader))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def history(self, ticket: int) -> list[dict[str, Any]]:
        answer = self.client.get(f"/v1/tickets/{ticket}/history", headers=auth(self.reader))
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()["events"]
        return events


@pytest.fixture
def desk(server: RunningServer, client: httpx.Client, source_key: str) -> Desk:
    return Desk(server, client, source_key)


def open_console(page: Any, server: RunningServer, key: str, code: str = "ioc") -> Any:
    log_in(page, server, key)
    page.goto(f"{server.url}/agencies/{code}")
    page.wait_for_function(LIVE, timeout=15_000)
    page.wait_for_function(LOADED, timeout=15_000)
    return page


def queue_ids(page: Any) -> list[int]:
    ids: list[int] = page.evaluate(
        "[...document.querySelectorAll('#queue tbody tr')].map(r => Number(r.dataset.ticket))"
    )
    return ids


def choose(page: Any, ticket: int) -> None:
    page.click(f'#queue tr[data-ticket="{ticket}"]')
    page.wait_for_function(
        f"document.getElementById('detail').dataset.ticket === '{ticket}'", timeout=5000
    )


# --- access --------------------------------------------------------------------------------


def test_an_agency_opens_its_own_console_only(
    server: RunningServer, client: httpx.Client, ioc_key: str, second_agency: str
) -> None:
    mine = client.get("/agencies/ioc", headers=session(server, ioc_key))
    assert mine.status_code == 200 and "Trung tâm Giám sát" in mine.text
    other = client.get(f"/agencies/{second_agency}", headers=session(server, ioc_key))
    assert other.status_code == 403 and "ioc" in other.text
    assert client.get("/wall", headers=session(server, ioc_key)).status_code == 403


def test_operators_open_any_console_and_unknown_agencies_are_404(
    server: RunningServer, client: httpx.Client, operator_key: str, second_agency: str
) -> None:
    cookie = session(server, operator_key)
    assert client.get(f"/agencies/{second_agency}", headers=cookie).status_code == 200
    missing = client.get("/agencies/khong-co", headers=cookie)
    assert missing.status_code == 404 and "khong-co" in missing.text


def test_leaders_have_no_console(server: RunningServer, client: httpx.Client) -> None:
    leader = make_key(server, "leader")
    answer = client.get("/agencies/ioc", headers=session(server, leader))
    assert answer.status_code == 403 and "leader" in answer.text


def test_logging_in_with_an_agency_key_opens_its_console(
    page: Any, server: RunningServer, ioc_key: str
) -> None:
    page.goto(f"{server.url}/agencies/ioc")
    assert page.url.endswith("/login?next=/agencies/ioc")
    page.fill("#key", ioc_key)
    page.click("#key-login button[type=submit]")
    page.wait_for_url(f"{server.url}/agencies/ioc")
    page.wait_for_function(LOADED, timeout=15_000)
    cookie = next(c for c in page.context.cookies() if c["name"] == "ioc_session")
    assert cookie["value"] != ioc_key  # the browser holds a session id, never the key
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read the key


# --- the queue -------------------------------------------------------------------------------


def test_the_queue_is_sorted_by_deadline_with_the_overdue_first(
    page: Any, server: RunningServer, desk: Desk, ioc_key: str
) -> None:
    fresh = desk.post(1, ago(0.1))
    older = desk.post(2, ago(30))
    overdue = desk.post(3, OLD)
    open_console(page, server, ioc_key)
    assert queue_ids(page) == [overdue, older, fresh]
    classes = page.evaluate(
        "[...document.querySelectorAll('#queue tbody tr')].map(r => r.classList[0])"
    )
    assert classes[0] == "overdue" and classes[2] == "on_track"
    assert page.locator("#stat-overdue").inner_text() == "1"
    assert page.locator("#stat-open").inner_text() == "3"
    assert "Kín" not in page.content() and "0987654321" not in page.content()


def test_a_new_ticket_joins_the_open_queue_live(
    page: Any, server: RunningServer, desk: Desk, ioc_key: str
) -> None:
    open_console(page, server, ioc_key)
    ticket = desk.post(4, ago(0.1))
    page.wait_for_function(
        f"document.querySelector('#queue tr[data-ticket=\"{ticket}\"]') !== null", timeout=2000
    )


def test_the_console_shows_the_tickets_history(
    page: Any, server: RunningServer, desk: Desk, ioc_key: str
) -> None:
    ticket = desk.post(5, ago(1))
    open_console(page, server, ioc_key)
    choose(page, ticket)
    entries = page.evaluate(
        "[...document.querySelectorAll('#history li')].map(l => l.dataset.action)"
    )
    assert entries == ["open"]
    assert "Đèn đường hỏng số 5" in page.locator("#detail").inner_text()


# --- actions ---------------------------------------------------------------------------------


def test_the_consoles_actions_change_the_ticket(
    page: Any, server: RunningServer, desk: Desk, ioc_key: str
) -> None:
    ticket = desk.post(6, ago(2))
    make_user(server, "bich.tt", "Trần Thị Bích")
    open_console(page, server, ioc_key)
    choose(page, ticket)

    def act(action: str, state: str, **fields: str) -> None:
        form = f'#detail form[data-action="{action}"]'
        for name, value in fields.items():
            field = page.locator(f"{form} [name={name}]")
            if field.evaluate("f => f.tagName") == "SELECT":
                field.select_option(value)
            else:
                field.fill(value)
        page.click(f"{form} button")
        page.wait_for_function(
            f"document.getElementById('detail').dataset.state === '{state}'", timeout=5000
        )
        assert desk.ticket(ticket)["state"] == state

    act("assign", "assigned", assignee="bich.tt")
    assert desk.ticket(ticket)["assignee"] == "bich.tt"
    assert "Trần Thị Bích" in page.locator("#queue").inner_text()
    act("start", "in_progress")
    act("wait", "waiting", reason="chờ người dân bổ sung ảnh")
    act("resume", "in_progress")
    act("resolve", "resolved")
    page.wait_for_function(
        f"document.querySelector('#queue tr[data-ticket=\"{ticket}\"]') === null", timeout=5000
    )
    history = desk.history(ticket)
    assert [e["action"] for e in history] == [
        "open",
        "assign",
        "start",
        "wait",
        "resume",
        "resolve",
    ]
    assert history[3]["note"] == "chờ người dân bổ sung ảnh"
    assert history[1]["actor"] == "test agency"


def test_transfer_needs_a_reason_and_hands_the_ticket_over(
    page: Any, server: RunningServer, desk: Desk, ioc_key: str, second_agency: str
) -> None:
    ticket = desk.post(7, ago(2))
    open_console(page, server, ioc_key)
    choose(page, ticket)
    form = '#detail form[data-action="transfer"]'
    page.select_option(f"{form} select", second_agency)
    page.fill(f"{form} [name=reason]", "   ")
    page.click(f"{form} button")
    page.wait_for_function(
        "document.getElementById('action-error').textContent.includes('reason')", timeout=5000
    )
    assert desk.ticket(ticket)["agency"] == "ioc"
    page.fill(f"{form} [name=reason]", "thuộc lĩnh vực xây dựng")
    page.click(f"{form} button")
    page.wait_for_function(
        f"document.querySelector('#queue tr[data-ticket=\"{ticket}\"]') === null", timeout=5000
    )
    moved = desk.ticket(ticket)
    assert (moved["agency"], moved["state"]) == (second_agency, "new")
    last = desk.history(ticket)[-1]
    assert (last["action"], last["from_agency"], last["to_agency"]) == (
        "transfer",
        "ioc",
        second_agency,
    )
    assert last["note"] == "thuộc lĩnh vực xây dựng"


def test_a_ticket_moved_elsewhere_leaves_the_open_console(
    page: Any, server: RunningServer, desk: Desk, ioc_key: str, second_agency: str
) -> None:
    ticket = desk.post(8, ago(2))
    open_console(page, server, ioc_key)
    assert queue_ids(page) == [ticket]
    answer = desk.client.post(
        f"/v1/tickets/{ticket}/actions",
        json={"action": "transfer", "to_agency": second_agency, "reason": "sai đơn vị"},
        headers=auth(desk.reader),
    )
    assert answer.status_code == 200, answer.text
    page.wait_for_function(
        "document.querySelectorAll('#queue tbody tr').length === 0", timeout=2000
    )
