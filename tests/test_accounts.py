"""Officials' accounts over real HTTP, a real database and the CLI: created by an admin, imported
from CSV with per-row errors, logged in with a password, disabled and reset (their logins end)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from ioc.cli.users import users
from ioc.settings import Settings
from tests.conftest import RunningServer, auth, make_key, make_user, start_server, stop_server

PASSWORD = "mật-khẩu-đủ-dài-1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"map_tiles": "none"})


def create(
    client: httpx.Client, admin_key: str, login: str, name: str, **extra: Any
) -> httpx.Response:
    body = {"login": login, "name": name, "role": "agency", "agency": "ioc", **extra}
    return client.post("/v1/users", json=body, headers=auth(admin_key))


def error_of(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def log_in(client: httpx.Client, login: str, password: str) -> httpx.Response:
    """Post the login form as a browser does (its token and cookie first)."""
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    return client.post(
        "/login", data={"login": login, "password": password, "csrf_token": token.group(1)}
    )


def test_an_admin_creates_officials(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    decomposed = unicodedata.normalize("NFD", "Nguyễn Thị Lan")
    made = create(client, admin_key, "Lan.NT", decomposed, password=PASSWORD)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["login"] == "lan.nt" and body["name"] == "Nguyễn Thị Lan"  # stored composed
    assert "temporary_password" not in body and not body["disabled"]
    temporary = create(client, admin_key, "hoa.tt", "Trần Thị Hoa").json()["temporary_password"]
    assert len(temporary) >= 12
    with psycopg.connect(server.db_url) as conn:
        stored = conn.execute("SELECT password_hash FROM users WHERE login = 'lan.nt'").fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$") and PASSWORD not in stored[0]

    error_of(create(client, admin_key, "lan.nt", "Khác"), 409, "conflict")
    for field, extra in (
        ("role", {"role": "source"}),
        ("role", {"role": "boss"}),
        ("agency", {"agency": "khong-co"}),
        ("agency", {"agency": None}),
        ("login", {"login": "có dấu"}),
        ("password", {"password": "ngắn"}),
        ("name", {"name": "  "}),
    ):
        answer = create(
            client, admin_key, extra.pop("login", "moi"), extra.pop("name", "Mới"), **extra
        )
        assert error_of(answer, 422, "invalid_input")["details"][0]["field"] == field
    operator = make_key(server, "operator")
    error_of(create(client, operator, "x1", "X"), 403, "forbidden")

    listed = client.get("/v1/users", headers=auth(admin_key)).json()["users"]
    assert [u["login"] for u in listed] == ["hoa.tt", "lan.nt"]
    agency = make_key(server, "agency", agency="ioc")
    mine = client.get("/v1/users", headers=auth(agency)).json()["users"]
    assert {u["name"] for u in mine} == {"Nguyễn Thị Lan", "Trần Thị Hoa"}
    error_of(client.get("/v1/users?agency=other", headers=auth(agency)), 403, "forbidden")


def test_csv_import_keeps_good_rows_and_names_each_bad_one(
    client: httpx.Client, admin_key: str
) -> None:
    create(client, admin_key, "da.co", "Đã Có", password=PASSWORD)
    csv_text = (
        "\ufefflogin,name,role,agency,phone\n"
        "an.nv,Nguyễn Văn An,agency,ioc,0900\n"
        "binh,Lê Bình,operator,,\n"
        "an.nv,Trùng Lặp,agency,ioc,\n"
        "da.co,Đã Có,agency,ioc,\n"
        "xa,Sai Đơn Vị,agency,khong-co,\n"
        "ke,Kẻ Nguồn,source,,\n"
        "\n"
        "cuong,,leader,,\n"
    )
    answer = client.post(
        "/v1/users/import",
        content=csv_text.encode(),
        headers=auth(admin_key) | {"Content-Type": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(c["login"], c["name"]) for c in body["created"]] == [
        ("an.nv", "Nguyễn Văn An"),
        ("binh", "Lê Bình"),
    ]
    assert all(len(c["temporary_password"]) >= 12 for c in body["created"])
    assert [(e["line"], e["field"]) for e in body["errors"]] == [
        (4, "login"),
        (5, "login"),
        (6, "agency"),
        (7, "role"),
        (9, "name"),
    ]
    assert "line 2" in body["errors"][0]["reason"]
    login = body["created"][0]["login"]
    assert log_in(client, login, body["created"][0]["temporary_password"]).status_code == 303

    headerless = client.post(
        "/v1/users/import",
        content=b"an,An\n",
        headers=auth(admin_key) | {"Content-Type": "text/csv"},
    )
    error_of(headerless, 422, "invalid_input")
    as_json = client.post("/v1/users/import", json=[], headers=auth(admin_key))
    error_of(as_json, 415, "unsupported_media_type")


def test_the_cli_creates_imports_disables_and_resets(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_DATABASE_URL", server.db_url)
    monkeypatch.setenv("IOC_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    made = runner.invoke(
        users, ["create", "--login", "tam.pv", "--name", "Phạm Văn Tâm", "--agency", "ioc"]
    )
    assert made.exit_code == 0, made.output
    temporary = made.stdout.strip()
    sheet = tmp_path / "can_bo.csv"
    sheet.write_text("name,login,agency,role\nHồ Thị Mai,mai.ht,ioc,agency\nX,,ioc,agency\n")
    imported = runner.invoke(users, ["import", str(sheet)])
    assert imported.exit_code == 1  # a row was refused; the good one is kept
    assert "mai.ht,Hồ Thị Mai," in imported.stdout
    assert f"{sheet}:3: login:" in imported.stderr
    listed = runner.invoke(users, ["list"])
    assert "mai.ht" in listed.stdout and "Phạm Văn Tâm" in listed.stdout

    with httpx.Client(base_url=server.url) as browser:
        assert log_in(browser, "tam.pv", temporary).status_code == 303
        assert browser.get("/session").status_code == 200
        assert runner.invoke(users, ["disable", "tam.pv"]).exit_code == 0
        assert browser.get("/session").status_code == 401  # the login ended
        assert log_in(browser, "tam.pv", temporary).status_code == 401
    assert runner.invoke(users, ["enable", "tam.pv"]).exit_code == 0
    reset = runner.invoke(users, ["reset-password", "tam.pv"])
    assert reset.exit_code == 0, reset.output
    with httpx.Client(base_url=server.url) as browser:
        assert log_in(browser, "tam.pv", temporary).status_code == 401
        assert log_in(browser, "tam.pv", reset.stdout.strip()).status_code == 303
    unknown = runner.invoke(users, ["disable", "khong.co"])
    assert unknown.exit_code == 1 and "no account" in unknown.output


def test_a_disabled_or_reset_official_is_logged_out(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    create(client, admin_key, "lan.nt", "Nguyễn Thị Lan", password=PASSWORD)
    with httpx.Client(base_url=server.url) as browser:
        answer = log_in(browser, "LAN.NT", PASSWORD)
        assert answer.status_code == 303 and answer.headers["location"] == "/agencies/ioc"
        who = browser.get("/session").json()
        assert who["who"] == "Nguyễn Thị Lan" and who["login"] == "lan.nt"
        disabled = client.post("/v1/users/lan.nt/disable", headers=auth(admin_key))
        assert disabled.status_code == 200 and disabled.json()["disabled"]
        assert browser.get("/session").status_code == 401
        assert browser.get("/agencies/ioc").status_code == 303  # back to the login page
        refused = log_in(browser, "lan.nt", PASSWORD)
        assert refused.status_code == 401 and "mật khẩu không đúng" in refused.text
        assert 'value="lan.nt"' in refused.text  # the login is kept in the form

    assert client.post("/v1/users/lan.nt/enable", headers=auth(admin_key)).status_code == 200
    with httpx.Client(base_url=server.url) as browser:
        assert log_in(browser, "lan.nt", PASSWORD).status_code == 303
        reset = client.post("/v1/users/lan.nt/password", json={}, headers=auth(admin_key))
        assert reset.status_code == 200, reset.text
        assert browser.get("/session").status_code == 401
        new = reset.json()["temporary_password"]
        assert log_in(browser, "lan.nt", new).status_code == 303

        token = browser.get("/session").json()["csrf_token"]
        changed = browser.post(
            "/v1/users/me/password",
            json={"current_password": new, "new_password": PASSWORD + "x"},
            headers={"X-CSRF-Token": token},
        )
        assert changed.status_code == 200, changed.text
        assert browser.get("/session").status_code == 200  # the session in use stays
        wrong = browser.post(
            "/v1/users/me/password",
            json={"current_password": "sai-mat-khau", "new_password": PASSWORD},
            headers={"X-CSRF-Token": token},
        )
        assert error_of(wrong, 422, "invalid_input")["details"][0]["field"] == "current_password"
    error_of(client.post("/v1/users/khong.co/disable", headers=auth(admin_key)), 404, "not_found")


def test_wrong_passwords_spend_the_failed_login_budget(settings: Settings) -> None:
    strict = {"auth_failure_burst": 4, "auth_failure_per_minute": 0.01}
    thread, server = start_server(settings.model_copy(update=strict))
    try:
        make_user(server, "lan.nt", "Nguyễn Thị Lan")
        with httpx.Client(base_url=server.url) as client:
            answers = [log_in(client, "lan.nt", f"sai-{n}-mat-khau").status_code for n in range(4)]
            assert answers == [401] * 4
            throttled = log_in(client, "lan.nt", PASSWORD)  # even the right one waits now
            assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
            assert log_in(client, "khong.co", "x").status_code == 429
    finally:
        stop_server(thread)


def test_an_official_logs_in_with_their_account_in_the_browser(
    page: Any, server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    create(client, admin_key, "lan.nt", "Nguyễn Thị Lan", password=PASSWORD)
    page.goto(f"{server.url}/agencies/ioc")
    assert page.url.endswith("/login?next=/agencies/ioc")
    page.fill("#login", "lan.nt")
    page.fill("#password", "sai-mat-khau-roi")
    page.click("#account-login button[type=submit]")
    assert "mật khẩu không đúng" in page.inner_text("[role=alert]")
    page.fill("#password", PASSWORD)
    page.click("#account-login button[type=submit]")
    page.wait_for_url(f"{server.url}/agencies/ioc")
    page.wait_for_function("document.body.dataset.loaded === 'true'", timeout=15_000)
    assert "Nguyễn Thị Lan" in page.content()
    cookie = next(c for c in page.context.cookies() if c["name"] == "ioc_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and PASSWORD not in cookie["value"]


# --- an official's work on tickets ------------------------------------------------------------


def field_report(n: int) -> dict[str, Any]:
    return {
        "kind": "field_report",
        "external_id": f"A-{n}",
        "category": "moi_truong",
        "description": f"Rác thải số {n}",
        "lon": 107.50 + n * 0.01,
        "lat": 16.46,
        "occurred_at": "2025-08-01T07:45:00+07:00",
        "reporter": {"name": "Nguyễn Văn A", "phone": "0900000001"},
    }


def new_ticket(server: RunningServer, client: httpx.Client, n: int) -> int:
    source = make_key(server, "source", source="hue-s")
    answer = client.post("/v1/events", json=field_report(n), headers=auth(source))
    assert answer.status_code == 201, answer.text
    with psycopg.connect(server.db_url) as conn:
        row = conn.execute(
            "SELECT ticket_id FROM field_reports WHERE external_id = %s", (f"A-{n}",)
        ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def test_an_officials_actions_are_recorded_by_name(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    ticket = new_ticket(server, client, 1)
    create(client, admin_key, "lan.nt", "Nguyễn Thị Lan", password=PASSWORD)
    make_user(server, "hoa.tt", "Trần Thị Hoa")
    with httpx.Client(base_url=server.url) as browser:
        assert log_in(browser, "lan.nt", PASSWORD).status_code == 303
        token = {"X-CSRF-Token": browser.get("/session").json()["csrf_token"]}
        url = f"/v1/tickets/{ticket}/actions"
        assigned = browser.post(url, json={"action": "assign", "assignee": "hoa.tt"}, headers=token)
        assert assigned.status_code == 200, assigned.text
        assert assigned.json()["assignee"] == "hoa.tt"
        assert browser.post(url, json={"action": "start"}, headers=token).status_code == 200
    history = client.get(f"/v1/tickets/{ticket}/history", headers=auth(admin_key)).json()
    moves = [(e["action"], e["actor"], e["note"]) for e in history["events"][1:]]
    assert moves == [
        ("assign", "Nguyễn Thị Lan (lan.nt)", "assignee: Trần Thị Hoa (hoa.tt)"),
        ("start", "Nguyễn Thị Lan (lan.nt)", ""),
    ]


def test_assignment_names_an_active_official_of_the_tickets_agency(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    ticket = new_ticket(server, client, 2)
    with psycopg.connect(server.db_url) as conn:
        conn.execute("INSERT INTO agencies (code, name_vi) VALUES ('so-xd', 'Sở Xây dựng')")
    make_user(server, "xd.an", "Lê Văn An", agency="so-xd")
    make_user(server, "nghi", "Đỗ Nghỉ")
    make_user(server, "dh.binh", "Phan Bình", agency=None, role="operator")
    assert client.post("/v1/users/nghi/disable", headers=auth(admin_key)).status_code == 200
    url = f"/v1/tickets/{ticket}/actions"
    for who in ("xd.an", "nghi", "dh.binh", "Nguyễn Văn Tự Do", "khong.co"):
        answer = client.post(
            url, json={"action": "assign", "assignee": who}, headers=auth(admin_key)
        )
        error = error_of(answer, 422, "invalid_input")
        assert error["details"] == [{"field": "assignee", "reason": error["details"][0]["reason"]}]
        assert who in error["message"]
    state = client.get(f"/v1/tickets/{ticket}", headers=auth(admin_key)).json()
    assert state["state"] == "new" and state["assignee"] is None  # nothing changed


def test_an_officials_console_shows_their_tickets_first(
    page: Any, server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    first, second, third = (new_ticket(server, client, n) for n in (3, 4, 5))
    create(client, admin_key, "lan.nt", "Nguyễn Thị Lan", password=PASSWORD)
    make_user(server, "hoa.tt", "Trần Thị Hoa")
    for ticket, who in ((first, "hoa.tt"), (third, "lan.nt")):
        answer = client.post(
            f"/v1/tickets/{ticket}/actions",
            json={"action": "assign", "assignee": who},
            headers=auth(admin_key),
        )
        assert answer.status_code == 200, answer.text
    page.goto(f"{server.url}/login")
    page.fill("#login", "lan.nt")
    page.fill("#password", PASSWORD)
    page.click("#account-login button[type=submit]")
    page.wait_for_url(f"{server.url}/agencies/ioc")
    page.wait_for_function("document.body.dataset.loaded === 'true'", timeout=15_000)
    rows = page.evaluate(
        "[...document.querySelectorAll('#queue tbody tr')]"
        ".map(r => [Number(r.dataset.ticket), r.classList.contains('mine')])"
    )
    assert rows[0] == [third, True]
    assert sorted(t for t, _ in rows[1:]) == sorted([first, second])
    assert "Trần Thị Hoa" in page.locator("#queue").inner_text()
    page.click(f"#queue tr[data-ticket='{second}']")
    page.wait_for_selector(
        f"#detail[data-ticket='{second}'] form[data-action=assign] option", state="attached"
    )
    options = page.locator("#detail form[data-action=assign] option").all_inner_texts()
    assert options == ["Trần Thị Hoa (hoa.tt)", "Nguyễn Thị Lan (lan.nt)"]  # by login
