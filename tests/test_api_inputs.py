"""Every input of every endpoint: text the database cannot hold (NUL, lone surrogates) or that is
too long is refused with a 4xx naming the field, in the API's error shape (Open311's on its
routes), and never reaches the database as a 500. Blank query values count as absent, and a
405 names every method the resource answers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from ioc import params
from ioc.alerts import deliveries
from ioc.alerts import queries as alert_queries
from ioc.api import errors
from ioc.api.body import SMALL_BODY_BYTES
from ioc.errors import InvalidInput, StoreUnavailable
from ioc.tickets import filters as queue_filters
from ioc.tickets.states import MOVES, STATES
from tests.conftest import RunningServer, auth, make_key

NUL = "a\x00b"
SOON = (datetime.now(UTC) + timedelta(days=1)).isoformat()


def platform_error(response: httpx.Response, *words: str) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    for word in words:
        assert word in error["message"], error["message"]
    return dict(error)


def open311_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and [set(e) for e in body] == [{"code", "description"}]
    assert body[0]["code"] == status
    for word in words:
        assert word in body[0]["description"], body[0]["description"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/tickets?agency=a%00b",
        "/v1/tickets?category=a%00b",
        "/v1/alerts?agency=a%00b",
        "/v1/alerts?rule=a%00b",
        "/v1/alerts?subject_id=a%00b",
        "/v1/alerts?category=a%00b",
        "/v1/alerts?level=a%00b",
        "/v1/deliveries?agency=a%00b",
        "/v1/sensors?after=a%00b",
        "/v1/dossiers/a%00b",
        "/v1/review?agency=a%00b",
        "/v1/tickets?a%00b=1",
    ],
)
def test_nul_in_a_query_or_path_value_is_refused(
    client: httpx.Client, admin_key: str, path: str
) -> None:
    error = platform_error(client.get(path, headers=auth(admin_key)), "NUL")
    assert error["code"] == "invalid_input"


def test_an_over_long_query_value_is_refused(client: httpx.Client, admin_key: str) -> None:
    long = "x" * (params.MAX_QUERY_VALUE + 1)
    platform_error(client.get("/v1/deliveries", params={"agency": long}, headers=auth(admin_key)))


def test_a_lone_surrogate_in_a_path_is_only_an_unknown_dossier(
    client: httpx.Client, admin_key: str
) -> None:
    # Not UTF-8 on the wire: the server reads it as U+FFFD, which PostgreSQL holds.
    response = client.get("/v1/dossiers/%ED%A0%80", headers=auth(admin_key))
    assert response.status_code == 404, response.text


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/v1/tickets/1/actions", {"action": "wait", "reason": NUL}, ("reason", "NUL")),
        ("/v1/tickets/1/actions", {"action": "assign", "assignee": NUL}, ("assignee", "NUL")),
        ("/v1/tickets/1/actions", {"action": "transfer", "reason": "x", "to_agency": NUL}, ()),
        ("/v1/silences", {"matchers": {"agency": NUL}, "ends_at": SOON}, ("matchers.agency",)),
        ("/v1/silences", {"matchers": {NUL: "x"}, "ends_at": SOON}, ("matchers", "NUL")),
        (
            "/v1/silences",
            {"matchers": {"agency": "x"}, "ends_at": SOON, "comment": NUL},
            ("comment", "NUL"),
        ),
    ],
)
def test_nul_in_a_json_field_is_refused_naming_it(
    client: httpx.Client, admin_key: str, path: str, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    error = platform_error(client.post(path, json=body, headers=auth(admin_key)), *words)
    assert error["code"] == "invalid_input"


def test_a_lone_surrogate_in_json_is_a_malformed_body(client: httpx.Client, admin_key: str) -> None:
    body = b'{"action": "wait", "reason": "\\ud800"}'
    response = client.post(
        "/v1/tickets/1/actions",
        content=body,
        headers={**auth(admin_key), "Content-Type": "application/json"},
    )
    assert platform_error(response)["code"] == "malformed_body"


def test_a_sensor_with_nul_in_its_name_is_refused_and_the_others_kept(
    client: httpx.Client, admin_key: str
) -> None:
    sensors = [
        {"sensor_id": "HUE-NUL-1", "lon": 107.58, "lat": 16.46, "name": NUL},
        {"sensor_id": "HUE-NUL-2", "lon": 107.59, "lat": 16.46, "name": "Cầu Trường Tiền"},
    ]
    response = client.post("/v1/sensors", json=sensors, headers=auth(admin_key))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["stored"] == 1
    assert answer["errors"] == [{"line": 1, "field": "name", "reason": params.unstorable(NUL)}]
    platform_error(client.post("/v1/sensors", json=sensors[:1], headers=auth(admin_key)), "valid")


def test_nul_in_the_admin_config_is_refused(client: httpx.Client, admin_key: str) -> None:
    config = client.get("/v1/admin/config", headers=auth(admin_key)).json()
    config["categories"][0]["name_vi"] = NUL
    response = client.put("/v1/admin/config", json=config, headers=auth(admin_key))
    platform_error(response, "NUL", "name_vi")


@pytest.mark.parametrize(
    "path",
    [
        "/open311/v2/services/a%00.json",
        "/open311/v2/requests/a%00.json",
        "/open311/v2/requests.json?service_code=a%00",
        "/open311/v2/requests.json?a%00=1",
    ],
)
def test_nul_in_an_open311_read_is_an_open311_400(client: httpx.Client, path: str) -> None:
    open311_error(client.get(path), 400, "NUL")


@pytest.mark.parametrize("field", ["description", "address_string", "first_name", "media_url"])
def test_nul_in_an_open311_post_is_an_open311_400(
    client: httpx.Client, source_key: str, field: str
) -> None:
    form = {
        "api_key": source_key,
        "service_code": "moi_truong",
        "lat": "16.4637",
        "long": "107.5905",
        field: NUL,
    }
    open311_error(client.post("/open311/v2/requests.json", data=form), 400, field, "NUL")


def test_a_value_the_database_refuses_is_the_callers_error_as_a_last_line() -> None:
    # Validation names the field first; should a value slip past it, the database's refusal
    # is still the caller's 422 (Open311: 400), not a 500 with a traceback.
    refused = errors.translate(psycopg.DataError("PostgreSQL text fields cannot contain NUL"))
    assert isinstance(refused, InvalidInput)
    assert isinstance(errors.translate(psycopg.OperationalError("gone")), StoreUnavailable)
    assert errors.translate(psycopg.ProgrammingError("our own bug")) is None


def test_a_key_with_nul_is_an_unknown_key(client: httpx.Client, server: RunningServer) -> None:
    form = client.get("/login")  # the login form's token (and its cookie) come with the form
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    response = client.post(
        "/login",
        data={"key": "ioc_a\x00b_secret", "next": "", "csrf_token": token.group(1)},
        headers={"Origin": server.url},
    )
    assert response.status_code == 401, response.text
    response = client.get("/v1/tickets", params={"api_key": "ioc_a\x00b_secret"})
    assert 400 <= response.status_code < 500, response.text


def test_a_websocket_handshake_with_nul_is_refused(server: RunningServer) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    key = make_key(server, "operator")
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/v1/tickets/ws?api_key={key}&x=a%00b").close()
    assert refused.value.response.status_code == 403


def test_blank_query_values_count_as_absent(client: httpx.Client, admin_key: str) -> None:
    for path in (
        "/v1/tickets?overdue=&bbox=&agency=&cursor=&limit=&since=&until=&state=&category=",
        "/v1/deliveries?agency=&state=&cursor=&limit=",
        "/v1/alerts?status=&agency=&rule=&limit=&cursor=",
    ):
        response = client.get(path, headers=auth(admin_key))
        assert response.status_code == 200, (path, response.text)


def test_a_405_names_every_method_of_the_resource(client: httpx.Client, admin_key: str) -> None:
    response = client.request("OPTIONS", "/v1/sensors", headers=auth(admin_key))
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}
    response = client.delete("/v1/silences", headers=auth(admin_key))
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}


def test_every_operation_documents_its_error_statuses(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            declared = set(operation["responses"])
            if path.startswith("/v1/"):
                assert {"401", "403", "422", "503"} <= declared, (method, path)
                if "requestBody" in operation:
                    assert {"400", "413", "415"} <= declared, (method, path)
                error = operation["responses"]["422"]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/Error"}, (method, path)
            if path.startswith("/open311/"):
                assert {"400", "503"} <= declared, (method, path)


def test_a_missing_required_parameter_is_named_as_clients_send_it(
    client: httpx.Client, server: RunningServer
) -> None:
    key = make_key(server, "operator")
    error = platform_error(client.get("/v1/wall/changes", headers=auth(key)))
    assert error["details"][0]["field"] == "since"


def test_blank_review_filters_count_as_absent(client: httpx.Client, server: RunningServer) -> None:
    key = make_key(server, "leader")
    response = client.get("/v1/review?agency=&category=", headers=auth(key))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "states", "max_limit"),
    [
        ("/v1/tickets", STATES, queue_filters.MAX_LIMIT),
        ("/v1/deliveries", deliveries.STATES, deliveries.MAX_LIMIT),
        ("/v1/alerts", None, alert_queries.MAX_LIMIT),
    ],
)
def test_listings_type_their_parameters_and_keep_their_refusals(
    client: httpx.Client, admin_key: str, path: str, states: Any, max_limit: int
) -> None:
    operation = client.get("/openapi.json").json()["paths"][path]["get"]
    declared = {p["name"]: p for p in operation["parameters"]}
    blank = {"type": "string", "maxLength": 0}  # a blank value means the parameter is not given
    assert declared["limit"]["schema"] == {
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": max_limit, "default": 100}, blank]
    }
    assert declared["cursor"]["schema"]["anyOf"][0]["format"].endswith("-cursor")
    if states is not None:
        state = declared["state"]
        assert state["schema"] == {"type": "array", "items": {"type": "string", "enum": [*states]}}
        assert state["style"] == "form" and state["explode"] is True
        # The domain still words the refusal, in the one error shape, naming the field.
        error = platform_error(
            client.get(f"{path}?state=nope", headers=auth(admin_key)), "state", "accepted:"
        )
        assert error["details"] == [{"field": "state", "reason": error["message"][7:]}]
    else:
        status, kind = declared["status"]["schema"], declared["subject_kind"]["schema"]
        assert status["anyOf"][0]["enum"] == ["active", "resolved", "all"]
        assert kind["anyOf"][0]["enum"] == ["ticket", "dossier", "sensor"]
    error = platform_error(
        client.get(f"{path}?limit={max_limit + 1}", headers=auth(admin_key)), "limit"
    )
    assert error["code"] == "invalid_input" and error["details"][0]["field"] == "limit"
    assert client.get(f"{path}?limit={max_limit}", headers=auth(admin_key)).status_code == 200
    assert client.get(f"{path}?limit=&cursor=", headers=auth(admin_key)).status_code == 200


def test_each_ticket_action_states_the_fields_it_needs(client: httpx.Client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/tickets/{ticket_id}/actions"]
    schema = operation["post"]["requestBody"]["content"]["application/json"]["schema"]
    needs = {
        action: set(branch["required"]) - {"action"}
        for branch in schema["anyOf"]
        for action in branch["properties"]["action"]["enum"]
    }
    assert needs == {
        name: {
            field
            for field, needed in (
                ("reason", move.needs_reason),
                ("assignee", move.needs_assignee),
                ("to_agency", move.needs_agency),
            )
            if needed
        }
        for name, move in MOVES.items()
    }
    assert needs["transfer"] == {"reason", "to_agency"} and needs["start"] == set()


def test_endpoints_of_small_bodies_refuse_large_ones_before_reading(
    client: httpx.Client, admin_key: str, source_key: str
) -> None:
    # Under the server's body limit, over what a silence, an action or a service request needs.
    big = b'{"comment": "' + b"x" * SMALL_BODY_BYTES + b'"}'
    json_body = {"Content-Type": "application/json"}
    for path in ("/v1/silences", "/v1/tickets/1/actions"):
        answer = client.post(path, content=big, headers=auth(admin_key) | json_body)
        assert answer.status_code == 413, (path, answer.text)
        assert platform_error(answer)["code"] == "payload_too_large"
    form = b"service_code=moi_truong&lat=16.46&long=107.58&description=" + b"x" * SMALL_BODY_BYTES
    answer = client.post(
        "/open311/v2/requests.json",
        content=form,
        headers=auth(source_key) | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    open311_error(answer, 413)
