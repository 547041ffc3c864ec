"""Open311 GeoReport v2: discovery, services, posting and reading requests, filters, errors.

The response-schema tests read the Open311 project's JSON Schemas from ../shared/specs and skip
where that folder is absent; every other test stands on its own.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from tests.conftest import RunningServer, auth, make_key

BASE = "/open311/v2"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs" / "open311-georeport-v2"
CONTACT = {
    "first_name": "Nguyễn",
    "last_name": "Văn Bình",
    "email": "binh@example.vn",
    "phone": "0912345678",
}
FORMATS = ["json", "xml"]


def form(key: str | None, **extra: str | None) -> dict[str, str]:
    """A posted service request; a field given as None is left out."""
    fields: dict[str, str | None] = {
        "service_code": "moi_truong",
        "lat": "16.4637",
        "long": "107.5905",
        "description": "Rác thải tồn đọng trên đường Lê Lợi",
        "address_string": "12 Lê Lợi, Phường Thuận Hóa",
        "media_url": "https://example.vn/anh1.jpg",
        "device_id": "ignored-device",
        "api_key": key,
        **CONTACT,
        **extra,
    }
    return {name: value for name, value in fields.items() if value is not None}


def post(client: httpx.Client, fields: dict[str, str], fmt: str = "json") -> httpx.Response:
    return client.post(f"{BASE}/requests.{fmt}", data=fields)


def rows(server: RunningServer, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.db_url) as conn:
        return conn.execute(query, params).fetchall()


def xml_of(response: httpx.Response, root: str) -> ET.Element:
    assert response.headers["content-type"].startswith("text/xml"), response.headers
    document = ET.fromstring(response.content)
    assert document.tag == root
    return document


def records(element: ET.Element) -> list[dict[str, str | None]]:
    """<root><item><field>…</field>…</item>…</root> as dicts of text."""
    return [{field.tag: field.text for field in item} for item in element]


def failures(response: httpx.Response, fmt: str) -> list[tuple[int, str]]:
    """The (code, description) pairs of an Open311 error answer, checking its shape."""
    if fmt == "json":
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert isinstance(body, list) and body
        for item in body:
            assert set(item) == {"code", "description"}
        return [(item["code"], item["description"]) for item in body]
    found = []
    for item in xml_of(response, "errors"):
        assert item.tag == "error"
        code, description = item.find("code"), item.find("description")
        assert code is not None and code.text is not None
        assert description is not None and description.text is not None
        found.append((int(code.text), description.text))
    assert found
    return found


def refused(response: httpx.Response, fmt: str, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    ((code, description),) = failures(response, fmt)
    assert code == status
    for word in words:
        assert word in description, description


# --- discovery and services ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_discovery_names_this_endpoint(
    client: httpx.Client, server: RunningServer, fmt: str
) -> None:
    response = client.get(f"{BASE}/discovery.{fmt}")
    assert response.status_code == 200, response.text
    if fmt == "json":
        document = response.json()
        (endpoint,) = document["endpoints"]
        formats = endpoint["formats"]
    else:
        root = xml_of(response, "discovery")
        document = {child.tag: child.text for child in root if child.tag != "endpoints"}
        (node,) = root.findall("endpoints/endpoint")
        endpoint = {child.tag: child.text for child in node if child.tag != "formats"}
        formats = [f.text for f in node.findall("formats/format")]
    assert document["changeset"] and document["contact"] and document["key_service"]
    assert endpoint["url"] == f"{server.url}{BASE}"
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["type"] == "production"
    assert sorted(formats) == ["application/json", "text/xml"]


def test_services_are_the_categories(client: httpx.Client, server: RunningServer) -> None:
    response = client.get(f"{BASE}/services.json")
    assert response.status_code == 200, response.text
    services = {s["service_code"]: s for s in response.json()}
    categories = rows(server, "SELECT code, name_vi, default_deadline_hours FROM categories")
    assert set(services) == {code for code, _, _ in categories}
    waste = services["moi_truong"]
    assert waste["service_name"] == "Môi trường, rác thải"
    assert waste["metadata"] is False
    assert waste["type"] == "realtime"
    assert waste["keywords"] == "môi trường, rác thải"
    assert "48 giờ" in waste["description"]
    assert "group" in waste


def test_services_in_xml_match_json(client: httpx.Client) -> None:
    as_json = client.get(f"{BASE}/services.json").json()
    root = xml_of(client.get(f"{BASE}/services.xml"), "services")
    assert all(item.tag == "service" for item in root)
    as_xml = records(root)
    assert [s["service_code"] for s in as_xml] == [s["service_code"] for s in as_json]
    assert [s["service_name"] for s in as_xml] == [s["service_name"] for s in as_json]
    assert {s["metadata"] for s in as_xml} == {"false"}
    assert {s["type"] for s in as_xml} == {"realtime"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_service_definition_has_no_extra_attributes(client: httpx.Client, fmt: str) -> None:
    response = client.get(f"{BASE}/services/chieu_sang.{fmt}")
    assert response.status_code == 200, response.text
    if fmt == "json":
        assert response.json() == {"service_code": "chieu_sang", "attributes": []}
    else:
        root = xml_of(response, "service_definition")
        assert root.findtext("service_code") == "chieu_sang"
        attributes = root.find("attributes")
        assert attributes is not None and list(attributes) == []


# --- posting and reading one request ------------------------------------------------------


def test_post_opens_a_ticket_that_reads_back_open(
    client: httpx.Client, server: RunningServer, source_key: str
) -> None:
    response = post(client, form(source_key))
    assert response.status_code == 200, response.text
    ((answer),) = response.json()
    assert set(answer) == {"service_request_id", "service_notice", "account_id"}
    assert answer["account_id"] is None
    assert "48 giờ" in answer["service_notice"]
    request_id = answer["service_request_id"]
    assert isinstance(request_id, str) and request_id.isdigit()

    ((source, external_id, reporter, ticket_id),) = rows(
        server, "SELECT source, external_id, reporter, ticket_id FROM field_reports"
    )
    assert (source, str(ticket_id)) == ("hue-s", request_id)
    assert external_id.startswith("open311-")
    assert reporter == {"name": "Nguyễn Văn Bình", "phone": "0912345678", "email": CONTACT["email"]}
    ((opened, deadline, agency),) = rows(
        server,
        "SELECT t.opened_at, t.deadline_at, a.name_vi FROM tickets t"
        " LEFT JOIN agencies a ON a.code = t.agency WHERE t.id = %s",
        int(request_id),
    )

    read = client.get(f"{BASE}/requests/{request_id}.json")
    assert read.status_code == 200, read.text
    ((request),) = read.json()
    assert request["service_request_id"] == request_id
    assert request["status"] == "open"
    assert request["status_notes"] is None
    assert request["service_code"] == "moi_truong"
    assert request["service_name"] == "Môi trường, rác thải"
    assert request["description"] == "Rác thải tồn đọng trên đường Lê Lợi"
    assert request["address"] == "12 Lê Lợi, Phường Thuận Hóa"
    assert (request["lat"], request["long"]) == (16.4637, 107.5905)
    assert request["media_url"] == "https://example.vn/anh1.jpg"
    assert request["agency_responsible"] == agency
    # Open311 times are shown to the second.
    assert datetime.fromisoformat(request["requested_datetime"]) == opened.replace(microsecond=0)
    assert datetime.fromisoformat(request["expected_datetime"]) == deadline.replace(microsecond=0)
    assert deadline - opened == timedelta(hours=48)
    # The receipt adds the citizen's lookup code (only they get it; reads are public).
    assert answer["service_notice"].startswith(request["service_notice"] + " Mã tra cứu: PA-")


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_reporters_contact_is_never_shown(
    client: httpx.Client, source_key: str, fmt: str
) -> None:
    request_id = post(client, form(source_key)).json()[0]["service_request_id"]
    for path in (f"requests/{request_id}", "requests"):
        shown = client.get(f"{BASE}/{path}.{fmt}").text
        assert request_id in shown
        for value in CONTACT.values():
            assert value not in shown


def test_post_answers_and_reads_in_xml(client: httpx.Client, source_key: str) -> None:
    response = post(client, form(source_key, service_code="chieu_sang"), "xml")
    assert response.status_code == 200, response.text
    ((answer),) = records(xml_of(response, "service_requests"))
    assert answer["account_id"] is None
    request_id = answer["service_request_id"]
    assert request_id is not None and request_id.isdigit()

    root = xml_of(client.get(f"{BASE}/requests/{request_id}.xml"), "service_requests")
    ((request),) = records(root)
    assert root[0].tag == "request"
    assert request["service_request_id"] == request_id
    assert request["status"] == "open"
    assert request["service_code"] == "chieu_sang"
    assert request["status_notes"] is None  # null is an empty element
    assert request["lat"] == "16.4637"


def test_a_report_next_to_an_open_ticket_answers_that_ticket(
    client: httpx.Client, server: RunningServer, source_key: str
) -> None:
    first = post(client, form(source_key)).json()[0]["service_request_id"]
    again = post(client, form(source_key, lat="16.46372")).json()[0]["service_request_id"]
    assert again == first
    assert rows(server, "SELECT count(*), count(DISTINCT ticket_id) FROM field_reports") == [(2, 1)]


def test_a_location_without_coordinates_is_refused_with_the_reason(
    client: httpx.Client, server: RunningServer, source_key: str
) -> None:
    response = post(client, form(source_key, lat=None, long=None))
    refused(response, "json", 400, "lat and long are required", "address_string")
    assert rows(server, "SELECT count(*) FROM field_reports") == [(0,)]


# --- searching requests -------------------------------------------------------------------


@pytest.fixture
def history(client: httpx.Client, server: RunningServer, source_key: str) -> dict[str, str]:
    """Four tickets, by name: recent, week and old (moi_truong/chieu_sang), closed (giao_thong)."""
    now = datetime.now(HCM)
    plan = {
        "recent": ("moi_truong", now - timedelta(days=1), 107.590),
        "week": ("chieu_sang", now - timedelta(days=6), 107.600),
        "closed": ("giao_thong", now - timedelta(days=3), 107.610),
        "old": ("moi_truong", now - timedelta(days=120), 107.620),
    }
    for name, (category, at, lon) in plan.items():
        event = {
            "kind": "field_report",
            "external_id": f"HS-{name}",
            "category": category,
            "description": f"phản ánh {name}",
            "lon": lon,
            "lat": 16.46,
            "occurred_at": at.isoformat(),
        }
        response = client.post("/v1/events", json=event, headers=auth(source_key))
        assert response.status_code == 201, response.text
    ids = {
        external_id.removeprefix("HS-"): str(ticket)
        for external_id, ticket in rows(server, "SELECT external_id, ticket_id FROM field_reports")
    }
    with psycopg.connect(server.db_url) as conn:
        conn.execute(
            "UPDATE tickets SET state = 'closed', closed_at = now(), updated_at = now()"
            " WHERE id = %s",
            (int(ids["closed"]),),
        )
        conn.execute(
            "INSERT INTO ticket_events (ticket_id, at, actor, action, from_state, to_state, note)"
            " VALUES (%s, now(), 'so-gtvt', 'close', 'resolved', 'closed', 'Đã xử lý xong')",
            (int(ids["closed"]),),
        )
        conn.execute(
            "UPDATE tickets SET state = 'assigned', assignee = 'Trần Thị Cúc' WHERE id = %s",
            (int(ids["week"]),),
        )
        conn.execute(
            "INSERT INTO ticket_events (ticket_id, at, actor, action, from_state, to_state, note)"
            " VALUES (%s, now(), 'ubnd', 'assign', 'new', 'assigned', 'assignee: Trần Thị Cúc')",
            (int(ids["week"]),),
        )
    return ids


def ago(days: float) -> str:
    return (datetime.now(HCM) - timedelta(days=days)).isoformat(timespec="seconds")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["recent", "closed", "week"]),  # the last 90 days, newest first
        ({"service_code": "moi_truong"}, ["recent"]),
        ({"service_code": "moi_truong,chieu_sang"}, ["recent", "week"]),
        ({"status": "open"}, ["recent", "week"]),
        ({"status": "closed"}, ["closed"]),
        ({"status": "open,closed"}, ["recent", "closed", "week"]),
        ({"start_date": ago(4)}, ["recent", "closed"]),
        ({"end_date": ago(2)}, ["closed", "week"]),
        ({"start_date": ago(130), "end_date": ago(100)}, ["old"]),
        ({"start_date": ago(130), "end_date": ago(100), "service_code": "chieu_sang"}, []),
        ({"service_request_id": "old,recent", "status": "closed"}, ["recent", "old"]),
    ],
)
def test_request_filters(
    client: httpx.Client,
    history: dict[str, str],
    params: dict[str, str],
    expected: list[str],
) -> None:
    if "service_request_id" in params:
        names = params["service_request_id"].split(",")
        params = {**params, "service_request_id": ",".join(history[n] for n in names)}
        expected = sorted(expected, key=lambda n: int(history[n]))
    response = client.get(f"{BASE}/requests.json", params=params)
    assert response.status_code == 200, response.text
    assert [r["service_request_id"] for r in response.json()] == [history[n] for n in expected]


def test_filters_read_the_same_in_xml(client: httpx.Client, history: dict[str, str]) -> None:
    root = xml_of(client.get(f"{BASE}/requests.xml", params={"status": "open"}), "service_requests")
    assert [r["service_request_id"] for r in records(root)] == [history["recent"], history["week"]]


def test_an_unencoded_offset_plus_still_reads(
    client: httpx.Client, history: dict[str, str]
) -> None:
    # A '+' left raw in a query string arrives as a space; the offset is still honoured.
    raw = ago(4)
    assert "+07:00" in raw
    response = client.get(f"{BASE}/requests.json?start_date={raw}")
    assert response.status_code == 200, response.text
    assert [r["service_request_id"] for r in response.json()] == [
        history["recent"],
        history["closed"],
    ]


def test_a_closed_request_shows_why_and_when(
    client: httpx.Client, server: RunningServer, history: dict[str, str]
) -> None:
    ((request),) = client.get(f"{BASE}/requests/{history['closed']}.json").json()
    ((closed_at,),) = rows(
        server, "SELECT closed_at FROM tickets WHERE id = %s", int(history["closed"])
    )
    assert request["status"] == "closed"
    assert request["status_notes"] == "Đã xử lý xong"
    assert datetime.fromisoformat(request["updated_datetime"]) == closed_at.replace(microsecond=0)


def test_an_assignment_does_not_name_staff(client: httpx.Client, history: dict[str, str]) -> None:
    response = client.get(f"{BASE}/requests/{history['week']}.json")
    ((request),) = response.json()
    assert request["status"] == "open"
    assert request["status_notes"] is None
    assert "Trần Thị Cúc" not in response.text


def test_a_request_older_than_the_window_is_still_found_by_id(
    client: httpx.Client, history: dict[str, str]
) -> None:
    response = client.get(f"{BASE}/requests/{history['old']}.json")
    assert response.status_code == 200, response.text
    assert response.json()[0]["service_code"] == "moi_truong"


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"api_key": None}, 403, ("api_key",)),
        ({"api_key": "ioc_0000_notakey"}, 403, ("unknown or revoked",)),
        ({"service_code": "khong_co"}, 400, ("service_code", "khong_co", "moi_truong")),
        ({"service_code": None}, 400, ("service_code", "required")),
        ({"lat": "abc"}, 400, ("lat", "'abc'", "not a number")),
        ({"lat": "95"}, 400, ("lat", "between -90 and 90")),
        ({"long": "nan"}, 400, ("long", "not a number")),
        ({"long": None}, 400, ("long", "both lat and long")),
        ({"media_url": "ftp://example.vn/a.jpg"}, 400, ("media_url",)),
        ({"phone": "0" * 40}, 400, ("phone",)),
        ({"description": "x" * 4001}, 400, ("description", "4001", "4000")),
    ],
)
def test_a_refused_post_names_the_field(
    client: httpx.Client,
    server: RunningServer,
    source_key: str,
    fmt: str,
    change: dict[str, str | None],
    status: int,
    words: tuple[str, ...],
) -> None:
    fields = form(source_key, **change)
    refused(post(client, fields, fmt), fmt, status, *words)
    assert rows(server, "SELECT count(*) FROM field_reports") == [(0,)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("role", ["operator", "admin"])
def test_only_a_source_key_may_post(
    client: httpx.Client, server: RunningServer, fmt: str, role: str
) -> None:
    key = make_key(server, role)
    refused(post(client, form(key), fmt), fmt, 403, f"a {role!r} key cannot do this", "source")


def test_the_key_may_come_in_a_header(client: httpx.Client, source_key: str) -> None:
    response = client.post(f"{BASE}/requests.json", data=form(None), headers=auth(source_key))
    assert response.status_code == 200, response.text


def test_a_post_that_is_not_a_form_is_refused(client: httpx.Client, source_key: str) -> None:
    response = client.post(f"{BASE}/requests.json", json=form(source_key))
    refused(response, "json", 415, "application/x-www-form-urlencoded")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("requests/999999", 404, ("no service request '999999'",)),
        ("requests/abc", 404, ("no service request 'abc'",)),
        ("requests/²", 404, ("no service request '²'",)),
        ("requests/99999999999999999999", 404, ("no service request",)),
        ("services/khong_co", 404, ("service_code 'khong_co'",)),
        ("requests?status=pending", 400, ("status", "'pending'", "open, closed")),
        ("requests?service_code=khong_co", 400, ("service_code", "khong_co")),
        ("requests?service_request_id=1,x", 400, ("service_request_id", "'x'")),
        ("requests?start_date=yesterday", 400, ("start_date", "'yesterday'", "ISO 8601")),
        (
            "requests?start_date=2025-01-01T00:00:00&end_date=2025-06-01T00:00:00",
            400,
            ("end_date", "151 days", "at most 90"),
        ),
        (
            "requests?start_date=2025-06-01T00:00:00&end_date=2025-01-01T00:00:00",
            400,
            ("end_date", "before start_date"),
        ),
    ],
)
def test_a_refused_read_says_why(
    client: httpx.Client, path: str, status: int, words: tuple[str, ...], fmt: str
) -> None:
    resource, _, query = path.partition("?")
    url = f"{BASE}/{resource}.{fmt}" + (f"?{query}" if query else "")
    refused(client.get(url), fmt, status, *words)


def test_an_unknown_format_is_refused_in_json(client: httpx.Client) -> None:
    refused(client.get(f"{BASE}/services.csv"), "json", 400, "'csv'", ".json or .xml")


def test_reads_need_no_key_but_the_platform_api_still_does(client: httpx.Client) -> None:
    assert client.get(f"{BASE}/requests.json").status_code == 200
    assert client.get("/v1/categories").status_code == 401


# --- the Open311 project's response schemas (../shared/specs; skipped where absent) --------


@pytest.fixture
def validate() -> Callable[[str, Any], None]:
    if not SPECS.is_dir():
        pytest.skip(f"the Open311 schemas are not at {SPECS}")
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = {
        path.name: Resource.from_contents(
            json.loads(path.read_text(encoding="utf-8")), default_specification=DRAFT202012
        )
        for path in SPECS.glob("*.json")
        if path.name != "swagger.json"
    }
    registry: Registry[Any] = Registry().with_resources(resources.items())

    def check(name: str, instance: Any) -> None:
        validator = jsonschema.Draft202012Validator(
            resources[name].contents,
            registry=registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
        validator.validate(instance)

    return check


def test_services_match_the_open311_schema(
    client: httpx.Client, validate: Callable[[str, Any], None]
) -> None:
    services = client.get(f"{BASE}/services.json").json()
    validate("services.json", services)
    for item in services:
        validate("service.json", item)


def test_service_definition_matches_the_open311_schema(
    client: httpx.Client, validate: Callable[[str, Any], None]
) -> None:
    validate("service-definition.json", client.get(f"{BASE}/services/moi_truong.json").json())


def test_requests_match_the_open311_schema(
    client: httpx.Client,
    source_key: str,
    history: dict[str, str],
    validate: Callable[[str, Any], None],
) -> None:
    posted = post(client, form(source_key, lat="16.47")).json()[0]["service_request_id"]
    found = client.get(f"{BASE}/requests.json").json()
    assert {history["closed"], posted} <= {r["service_request_id"] for r in found}
    validate("requests.json", found)
    for item in found:
        validate("request.json", item)
    for request_id in (posted, history["closed"]):
        one = client.get(f"{BASE}/requests/{request_id}.json").json()
        validate("requests.json", one)
        validate("request.json", one[0])


def test_the_schema_check_can_fail(validate: Callable[[str, Any], None]) -> None:
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        validate("requests.json", [{"service_request_id": 7, "status": "pending"}])
