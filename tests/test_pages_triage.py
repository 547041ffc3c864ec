"""The operators' triage page in a real headless chromium: the queues, a previewed move, and
what the agencies' consoles and the histories show afterwards."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ioc.settings import Settings
from tests.conftest import RunningServer, log_in, make_key, open_session
from tests.test_pages_console import LOADED, open_console
from tests.test_triage_api import FAR, INSIDE, Reports, mapped

__all__ = ["mapped"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"map_tiles": "none"})


@pytest.fixture
def reports(mapped: RunningServer, client: httpx.Client) -> Reports:
    return Reports(mapped, client)


def open_triage(page: Any, server: RunningServer, queue: str = "none") -> Any:
    log_in(page, server, make_key(server, "operator"))
    page.goto(f"{server.url}/triage")
    page.wait_for_function(LOADED, timeout=15_000)
    if queue != "none":
        page.click(f'#tabs button[data-queue="{queue}"]')
        page.wait_for_function(LOADED, timeout=15_000)
    return page


def rows(page: Any) -> list[int]:
    found: list[int] = page.evaluate(
        "[...document.querySelectorAll('#queue tbody tr')].map(r => Number(r.dataset.ticket))"
    )
    return found


def choose(page: Any, ticket: int) -> None:
    page.click(f'#queue tr[data-ticket="{ticket}"]')
    page.wait_for_function(
        f"document.getElementById('detail').dataset.ticket === '{ticket}'", timeout=5000
    )


def preview_and_confirm(page: Any, move: str, **fields: str) -> str:
    """Fill a move's form, preview it, confirm it; returns the preview's text."""
    form = f'#detail form[data-move="{move}"]'
    for name, value in fields.items():
        if page.locator(f"{form} select[name={name}]").count():
            page.select_option(f"{form} select[name={name}]", value)
        else:
            page.fill(f"{form} [name={name}]", value)
    assert page.locator(f"{form} [data-step=confirm]").is_disabled()  # no confirming unseen
    page.click(f"{form} [data-step=preview]")
    page.wait_for_function(
        f"!document.querySelector('{form} [data-step=confirm]').disabled", timeout=5000
    )
    shown: str = page.locator(f"{form} .preview").inner_text()
    page.click(f"{form} [data-step=confirm]")
    page.wait_for_function(
        f"document.getElementById('detail').dataset.done === '{move}'", timeout=5000
    )
    return shown


def test_only_operators_and_admins_open_the_triage_page(
    mapped: RunningServer,
    client: httpx.Client,
) -> None:
    assert client.get("/triage", follow_redirects=False).headers["location"] == (
        "/login?next=/triage"
    )
    agency = make_key(mapped, "agency", agency="hepco")
    refused = client.get(
        "/triage", headers={"Cookie": f"ioc_session={open_session(mapped, agency)}"}
    )
    assert refused.status_code == 403
    admin = make_key(mapped, "admin")
    answer = client.get("/triage", headers={"Cookie": f"ioc_session={open_session(mapped, admin)}"})
    assert answer.status_code == 200 and "Chưa định tuyến" in answer.text


def test_the_queues_filter_by_category_and_date(
    page: Any,
    mapped: RunningServer,
    reports: Reports,
) -> None:
    lost = reports.post("U1", FAR, "giao_thong")
    other = reports.post("U2", (107.71, 16.42), "moi_truong")
    unclaimed = reports.post("C1", INSIDE, "giao_thong")
    open_triage(page, mapped)
    assert rows(page) == [lost, other]
    page.select_option("#filters select[name=category]", "giao_thong")
    page.click("#filters button[type=submit]")
    page.wait_for_function(LOADED, timeout=5000)
    assert rows(page) == [lost]
    page.fill("#filters input[name=since]", "2099-01-01")
    page.click("#filters button[type=submit]")
    page.wait_for_function(LOADED, timeout=5000)
    assert rows(page) == []
    page.fill("#filters input[name=since]", "")
    page.click('#tabs button[data-queue="catch_all"]')
    page.wait_for_function(LOADED, timeout=5000)
    assert rows(page) == [unclaimed]


def test_an_operator_recategorises_an_unrouted_report_into_an_agencys_live_console(
    page: Any,
    browser: Any,
    mapped: RunningServer,
    reports: Reports,
) -> None:
    ticket = reports.post("U", FAR, "giao_thong")
    console_context = browser.new_context(locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
    try:
        console = open_console(
            console_context.new_page(), mapped, make_key(mapped, "agency", agency="so-xd"), "so-xd"
        )
        assert console.evaluate("document.querySelectorAll('#queue tbody tr').length") == 0
        open_triage(page, mapped)
        choose(page, ticket)
        shown = preview_and_confirm(
            page, "recategorise", category="xay_dung", reason="ảnh cho thấy công trình xây dựng"
        )
        assert "Sở Xây dựng" in shown and "so-xd" in shown
        console.wait_for_function(
            f"document.querySelector('#queue tr[data-ticket=\"{ticket}\"]') !== null",
            timeout=5000,
        )
        page.wait_for_function(f"!document.querySelector('#queue tr[data-ticket=\"{ticket}\"]')")
    finally:
        console_context.close()
    moved = reports.ticket(ticket)
    assert (moved["agency"], moved["category"]) == ("so-xd", "xay_dung")
    last = reports.history(ticket)[-1]
    assert last["action"] == "recategorise" and "công trình" in last["note"]


def test_a_merge_from_the_page_shows_on_both_tickets_histories(
    page: Any,
    mapped: RunningServer,
    reports: Reports,
) -> None:
    kept = reports.post("A", INSIDE, "giao_thong")
    dup = reports.post("B", (107.53, 16.42), "giao_thong")
    open_triage(page, mapped, "catch_all")
    assert rows(page) == [kept, dup]
    choose(page, dup)
    shown = preview_and_confirm(page, "merge", into=str(kept), reason="cùng một vụ việc")
    assert f"#{kept}" in shown
    page.wait_for_selector('#history li[data-action="merge"]', timeout=5000)
    assert f"#{kept}" in page.locator('#history li[data-action="merge"]').inner_text()
    page.wait_for_function(f"!document.querySelector('#queue tr[data-ticket=\"{dup}\"]')")
    choose(page, kept)
    page.wait_for_selector('#history li[data-action="merge_in"]', timeout=5000)
    assert f"#{dup}" in page.locator('#history li[data-action="merge_in"]').inner_text()
    assert [e["action"] for e in reports.history(dup)][-1] == "merge"
    assert [e["action"] for e in reports.history(kept)][-1] == "merge_in"
