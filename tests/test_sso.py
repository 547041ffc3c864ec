"""Single sign-on against a real OpenID provider (``oidc-provider`` on Node, see
tests/oidc_provider.py): the whole code flow through real HTTP clients and a real browser, the
account created or linked, disabled accounts, and logins that do not hold together (a tampered
state, an ID token for another nonce, a person the claims give no role) refused."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from ioc.errors import ConfigError
from ioc.settings import Settings
from ioc.sso.mapping import SsoConfig, SsoRefused, person_of
from tests.conftest import RunningServer, auth, free_port, make_user, start_server, stop_server
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, provider

LAN = "lan.nguyen"  # the provider's official of the IOC centre (groups: ioc-can-bo)
KHACH = "khach.tran"  # a province employee in no group of the platform
PROVINCE_LOGIN = "Đăng nhập bằng tài khoản tỉnh"


@pytest.fixture
def app_port() -> int:
    return free_port()


class Idp:
    """The running provider, which a test may restart (on the same port, with new keys)."""

    def __init__(self, port: int, redirect_uri: str) -> None:
        self.port, self.redirect_uri = port, redirect_uri
        self.stack = ExitStack()
        self.url = self.stack.enter_context(provider(port, redirect_uri))

    def restart(self) -> None:
        self.stack.close()
        self.url = self.stack.enter_context(provider(self.port, self.redirect_uri))


@pytest.fixture
def idp(app_port: int) -> Iterator[Idp]:
    running = Idp(free_port(), f"http://127.0.0.1:{app_port}/login/oidc/callback")
    with running.stack:
        yield running


@pytest.fixture
def issuer(idp: Idp) -> str:
    return idp.url


@pytest.fixture
def settings(settings: Settings, issuer: str, app_port: int) -> Settings:
    return settings.model_copy(
        update={
            "map_tiles": "none",
            "oidc_issuer": issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_redirect_url": f"http://127.0.0.1:{app_port}/login/oidc/callback",
            "oidc_scopes": "openid profile ioc",
            "oidc_role_claim": "groups",
            "oidc_role_map": "ioc-quan-tri=admin,ioc-lanh-dao=leader,ioc-can-bo=agency",
            "oidc_agency_map": "trung-tam-ioc=ioc",
        }
    )


@pytest.fixture
def server(settings: Settings, app_port: int) -> Iterator[RunningServer]:
    thread, running = start_server(settings, port=app_port)
    yield running
    stop_server(thread)


def _form(page: httpx.Response) -> str:
    """The absolute action of the (only) form on a provider's page."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert action is not None, page.text
    return urljoin(str(page.url), action.group(1))


def at_provider(browser: httpx.Client, authorization_url: str, who: str) -> httpx.Response:
    """Sign in at the provider as ``who`` and consent; returns the provider's last answer, the
    redirect back to our callback (not followed)."""
    login_page = browser.get(authorization_url, follow_redirects=True)
    assert login_page.status_code == 200 and 'name="login"' in login_page.text
    consent = browser.post(
        _form(login_page),
        data={"prompt": "login", "login": who, "password": "mat-khau-tinh"},
        follow_redirects=True,
    )
    assert consent.status_code == 200 and 'value="consent"' in consent.text
    answer = browser.post(_form(consent), data={"prompt": "consent"})
    while answer.is_redirect and "/login/oidc/callback" not in answer.headers["location"]:
        answer = browser.get(urljoin(str(answer.url), answer.headers["location"]))
    assert answer.is_redirect, answer.text
    return answer


def begin(browser: httpx.Client, target: str = "") -> str:
    """Start a login at /login/oidc; returns the provider's authorization URL."""
    answer = browser.get("/login/oidc" + (f"?next={target}" if target else ""))
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def sso_login(browser: httpx.Client, who: str) -> httpx.Response:
    """The whole flow, as a browser makes it; returns our callback's answer."""
    back = at_provider(browser, begin(browser), who)
    return browser.get(back.headers["location"])


def test_an_official_logs_in_through_the_province_provider(
    server: RunningServer, issuer: str, admin_key: str, client: httpx.Client
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        assert PROVINCE_LOGIN in browser.get("/login").text
        request = parse_qs(urlsplit(begin(browser)).query)
        assert request["code_challenge_method"] == ["S256"] and len(request["nonce"][0]) >= 32
        assert request["client_id"] == [CLIENT_ID] and "openid" in request["scope"][0].split()
        assert len(request["state"][0]) >= 32 and "code_verifier" not in request

        landed = sso_login(browser, LAN)
        assert landed.status_code == 200, landed.text
        assert 'content="0;url=/agencies/ioc"' in landed.text  # on to the agency's console
        who = browser.get("/session").json()
        assert who["who"] == "Nguyễn Thị Lan" and who["login"] == "lan.nt"
        assert browser.get("/agencies/ioc").status_code == 200

        # The same session as the password login: it ends at logout.
        out = browser.post("/logout", headers={"Origin": server.url})
        assert out.status_code == 303
        assert browser.get("/session").status_code == 401

        # The second time the provider remembers its own session: straight back, same account.
        again = browser.get(begin(browser))
        assert again.is_redirect and "/login/oidc/callback" in again.headers["location"]
        assert browser.get(again.headers["location"]).status_code == 200
    listed = client.get("/v1/users", headers=auth(admin_key)).json()["users"]
    assert [(u["login"], u["role"], u["agency"]) for u in listed] == [("lan.nt", "agency", "ioc")]
    with psycopg.connect(server.db_url) as conn:
        linked = conn.execute(
            """SELECT i.issuer, i.subject, u.password_hash FROM user_identities i
               JOIN users u ON u.id = i.user_id"""
        ).fetchall()
        assert linked == [(issuer, LAN, None)]  # no password: the province's login only
        sessions = conn.execute(
            "SELECT count(*), count(revoked_at) FROM sessions WHERE user_id IS NOT NULL"
        ).fetchone()
        assert sessions == (2, 1)


def test_an_existing_account_is_linked_and_a_disabled_one_stays_refused(
    server: RunningServer, client: httpx.Client, admin_key: str
) -> None:
    make_user(server, "lan.nt", "Nguyễn T. Lan", agency="ioc", role="operator")
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        assert sso_login(browser, LAN).status_code == 200
        assert browser.get("/session").json()["login"] == "lan.nt"
    [user] = client.get("/v1/users", headers=auth(admin_key)).json()["users"]
    # Linked, and the provider's claims now give the name, role and agency.
    assert (user["name"], user["role"], user["agency"]) == ("Nguyễn Thị Lan", "agency", "ioc")

    assert client.post("/v1/users/lan.nt/disable", headers=auth(admin_key)).status_code == 200
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        refused = sso_login(browser, LAN)
        assert refused.status_code == 403 and "đã bị khóa" in refused.text
        assert PROVINCE_LOGIN in refused.text  # the login page, to try again
        assert browser.get("/session").status_code == 401


def test_new_signing_keys_of_the_provider_are_fetched(server: RunningServer, idp: Idp) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        assert sso_login(browser, LAN).status_code == 200  # its keys are now cached
    idp.restart()  # the same provider, signing with a key the platform has not seen
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        assert sso_login(browser, LAN).status_code == 200
        assert browser.get("/session").json()["login"] == "lan.nt"


def test_a_tampered_state_is_refused_and_a_callback_is_good_once(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        back = at_provider(browser, begin(browser), LAN).headers["location"]
        parts = urlsplit(back)
        query = parse_qs(parts.query)
        query["state"] = [query["state"][0][:-2] + "xx"]
        tampered = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        refused = browser.get(tampered)
        assert refused.status_code == 400 and "state does not match" in refused.text
        again = browser.get(back)  # the begun login was spent by the refused callback
        assert again.status_code == 400 and "no login was begun here" in again.text
        assert browser.get("/session").status_code == 401
    with httpx.Client(base_url=server.url, timeout=30) as stranger:
        # A callback delivered to a browser that began no login (login CSRF) is refused.
        assert stranger.get(back).status_code == 400
        assert stranger.get("/session").status_code == 401


def test_a_code_issued_for_another_nonce_is_refused(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        ours = urlsplit(begin(browser))
        # The same request (state, PKCE challenge) with another nonce: an ID token obtained
        # for another login, injected into ours.
        query = parse_qs(ours.query) | {"nonce": ["mot-nonce-khac-cua-ke-tan-cong-0123456789"]}
        forged = urlunsplit(ours._replace(query=urlencode(query, doseq=True)))
        back = at_provider(browser, forged, LAN)
        refused = browser.get(back.headers["location"])
        assert refused.status_code == 400 and "nonce" in refused.text
        assert browser.get("/session").status_code == 401


def test_a_person_without_a_mapped_role_is_refused_and_logged(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), httpx.Client(base_url=server.url) as browser:
        refused = sso_login(browser, KHACH)
    assert refused.status_code == 403 and "chưa được cấp quyền" in refused.text
    assert "'groups' names no role of this platform: nhan-vien" in html.unescape(refused.text)
    assert any("single sign-on refused" in r.getMessage() for r in caplog.records)
    with psycopg.connect(server.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def _config(**extra: str) -> SsoConfig:
    given = {
        "oidc_issuer": "https://dangnhap.hue.gov.vn/",
        "oidc_client_id": CLIENT_ID,
        "oidc_role_map": "ioc-lanh-dao=leader,ioc-can-bo=agency",
        "oidc_agency_map": "trung-tam-ioc=ioc",
    }
    config = SsoConfig.of(Settings(**(given | extra)))  # type: ignore[arg-type]
    assert config is not None
    return config


def test_claims_map_to_a_role_and_an_agency() -> None:
    config = _config()
    assert config.issuer == "https://dangnhap.hue.gov.vn"
    leader = person_of(config, {"sub": "m", "groups": ["x", "ioc-lanh-dao"], "name": "Lê Minh"})
    assert (leader.role.value, leader.agency, leader.name) == ("leader", None, "Lê Minh")
    assert leader.login.startswith("sso-")  # no login claim: one made from the subject
    official = person_of(
        config,
        {
            "sub": "l",
            "groups": "ioc-can-bo",
            "agency": "trung-tam-ioc",
            "preferred_username": "Lan.NT",
        },
    )
    assert (official.role.value, official.agency, official.login) == ("agency", "ioc", "lan.nt")
    with pytest.raises(SsoRefused, match="no agency"):
        person_of(config, {"sub": "l", "groups": ["ioc-can-bo"]})
    with pytest.raises(SsoRefused, match="names no role"):
        person_of(config, {"sub": "k", "groups": ["nhan-vien"]})
    fallback = _config(oidc_default_role="operator")
    assert person_of(fallback, {"sub": "k", "groups": ["nhan-vien"]}).role.value == "operator"
    with pytest.raises(ConfigError, match="IOC_OIDC_ROLE_MAP"):
        _config(oidc_role_map="nhom=source")
    with pytest.raises(ConfigError, match="gives nobody a role"):
        _config(oidc_role_map="")


def test_the_browser_logs_in_through_the_provider_and_lands_on_the_console(
    page: Any, server: RunningServer, issuer: str
) -> None:
    page.goto(f"{server.url}/agencies/ioc")
    assert page.url.endswith("/login?next=/agencies/ioc")
    page.click("#sso-login button[type=submit]")
    page.wait_for_url(f"{issuer}/**")  # at the province's provider (another site)
    page.fill("input[name=login]", LAN)
    page.fill("input[name=password]", "mat-khau-tinh")
    page.click("button[type=submit]")
    page.wait_for_selector("input[name=prompt][value=consent]", state="attached")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/agencies/ioc", timeout=15_000)
    page.wait_for_function("document.body.dataset.loaded === 'true'", timeout=15_000)
    assert "Nguyễn Thị Lan" in page.content()
    cookie = next(c for c in page.context.cookies() if c["name"] == "ioc_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
