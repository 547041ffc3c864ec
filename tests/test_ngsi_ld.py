"""NGSI-LD: Orion-LD notifications of TrafficFlowObserved in; TrafficFlowObserved, Alert and
Open311ServiceRequest entities out, with q, geo-queries and pagination; ProblemDetails errors.

The payloads follow ETSI GS CIM 009 (Notification, normalized and concise forms, query
parameters, ProblemDetails) and the Smart Data Models definitions of TrafficFlowObserved
(dataModel.Transportation), Alert (dataModel.Alert) and Open311ServiceRequest
(dataModel.IssueTracking).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import RunningServer, auth, make_key

NOTIFY = "/ngsi-ld/v1/notify"
ENTITIES = "/ngsi-ld/v1/entities"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
SDM_CONTEXT = [
    "https://smartdatamodels.org/context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
]
LINK = (
    '<https://smartdatamodels.org/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; '
    'type="application/ld+json"'
)
END = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0, second=0)
START = END - timedelta(minutes=5)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalized(sensor: str, intensity: int = 197, end: datetime = END) -> dict[str, Any]:
    """A TrafficFlowObserved in the normalized form, as the Smart Data Models example writes it."""
    return {
        "id": f"urn:ngsi-ld:TrafficFlowObserved:{sensor}",
        "type": "TrafficFlowObserved",
        "dateObserved": {"type": "Property", "value": f"{z(end - timedelta(minutes=5))}/{z(end)}"},
        "intensity": {"type": "Property", "value": intensity, "observedAt": z(end)},
        "averageVehicleSpeed": {"type": "Property", "value": 52.6, "unitCode": "KMH"},
        "occupancy": {"type": "Property", "value": 0.76},
        "laneId": {"type": "Property", "value": 1},
        "laneDirection": {"type": "Property", "value": "forward"},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [107.58, 16.46]},
        },
    }


def concise(sensor: str) -> dict[str, Any]:
    """The concise form (no member ``type`` on attributes), naming its sensor by refDevice."""
    return {
        "id": "urn:ngsi-ld:TrafficFlowObserved:loop-7-lane-1",
        "type": "TrafficFlowObserved",
        "refDevice": {"object": f"urn:ngsi-ld:Device:{sensor}"},
        "dateObserved": f"{z(START)}/{z(END)}",
        "intensity": {"value": 197, "observedAt": z(END)},
        "averageVehicleSpeed": 52.6,
        "occupancy": 0.76,
        "laneId": 1,
        "location": {"type": "Point", "coordinates": [107.58, 16.46]},
    }


def key_values(sensor: str) -> dict[str, Any]:
    """Key-values, with the period as dateObservedFrom and dateObservedTo (typed DateTimes)."""
    return {
        "id": f"urn:ngsi-ld:TrafficFlowObserved:{sensor}",
        "type": "TrafficFlowObserved",
        "dateObservedFrom": {"@type": "DateTime", "@value": z(START)},
        "dateObservedTo": {"@type": "DateTime", "@value": z(END)},
        "intensity": 197,
        "averageVehicleSpeed": 52.6,
        "occupancy": 0.76,
        "laneId": 1,
    }


def notification(*entities: dict[str, Any], context: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "urn:ngsi-ld:Notification:5fd0fa684eb81930c97005f3",
        "type": "Notification",
        "subscriptionId": "urn:ngsi-ld:Subscription:ioc-traffic",
        "notifiedAt": z(datetime.now(UTC)),
        "data": list(entities),
    }
    if context is not None:
        body["@context"] = context
    return body


def send(
    client: httpx.Client, key: str | None, body: Any, ld: bool = True, path: str = NOTIFY
) -> httpx.Response:
    headers = {"Content-Type": "application/ld+json" if ld else "application/json"}
    if key is not None:
        headers["X-API-Key"] = key  # as an Orion-LD subscription's receiverInfo sends it
    if not ld:
        headers["Link"] = LINK
    return client.post(path, content=json.dumps(body), headers=headers)


def readings(server: RunningServer) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.db_url) as conn:
        return conn.execute(
            "SELECT sensor_id, observed_at, interval_s, vehicle_count, avg_speed_kmh, occupancy,"
            " lane FROM traffic_readings ORDER BY sensor_id, observed_at"
        ).fetchall()


def problem(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    if kind is not None:
        assert body["type"] == ERRORS + kind, body
    return dict(body)


# --- receiving notifications -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "ld"),
    [("normalized", True), ("concise", False), ("key_values", True)],
)
def test_a_notified_entity_becomes_a_reading_of_its_sensor(
    client: httpx.Client,
    server: RunningServer,
    source_key: str,
    sensors: list[str],
    form: str,
    ld: bool,
) -> None:
    entity = {"normalized": normalized, "concise": concise, "key_values": key_values}[form](
        sensors[0]
    )
    response = send(
        client, source_key, notification(entity, context=SDM_CONTEXT if ld else None), ld
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 1 and answer["rejected"] == 0
    assert answer["entities"] == [
        {"id": entity["id"], "sensor_id": sensors[0], "status": "accepted"}
    ]
    [(sensor, observed, interval, count, speed, occupancy, lane)] = readings(server)
    assert (sensor, observed, interval, count, lane) == (sensors[0], END, 300, 197, 1)
    assert speed == pytest.approx(52.6) and occupancy == pytest.approx(76.0)


def test_an_unknown_sensor_is_refused_for_its_entity_alone(
    client: httpx.Client, server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    body = notification(normalized(sensors[0]), normalized("NOT-REGISTERED"), context=SDM_CONTEXT)
    answer = send(client, source_key, body).json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    refused = answer["entities"][1]
    assert refused["status"] == "rejected" and refused["attribute"] == "id"
    assert "'NOT-REGISTERED' is not registered" in refused["reason"]
    assert [r[0] for r in readings(server)] == [sensors[0]]


def test_a_notification_of_only_refused_entities_is_a_bad_request_data_problem(
    client: httpx.Client, source_key: str, sensors: list[str]
) -> None:
    entity = normalized(sensors[0])
    del entity["intensity"]
    body = problem(send(client, source_key, notification(entity)), 400, "BadRequestData")
    assert body["entities"][0]["attribute"] == "intensity"
    assert "required" in body["entities"][0]["reason"]


def test_a_repeated_notification_is_acknowledged_as_duplicates(
    client: httpx.Client, server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    body = notification(normalized(sensors[0]), normalized(sensors[1]))
    assert send(client, source_key, body).json()["accepted"] == 2
    again = send(client, source_key, body)
    assert again.status_code == 200
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 2)
    assert len(readings(server)) == 2


def test_an_instant_needs_the_period_from_the_notify_url(
    client: httpx.Client, server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    entity = normalized(sensors[0])
    entity["dateObserved"] = {"type": "Property", "value": {"@type": "DateTime", "@value": z(END)}}
    refused = problem(send(client, source_key, notification(entity)), 400, "BadRequestData")
    assert "interval_s" in refused["entities"][0]["reason"]
    stored = send(client, source_key, notification(entity), path=f"{NOTIFY}?interval_s=60")
    assert stored.status_code == 200, stored.text
    assert readings(server)[0][1:3] == (END, 60)


def test_expanded_names_and_inline_terms_are_understood(
    client: httpx.Client, server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    entity = {
        "id": f"urn:ngsi-ld:TrafficFlowObserved:{sensors[2]}",
        "type": "https://smartdatamodels.org/dataModel.Transportation/TrafficFlowObserved",
        "https://smartdatamodels.org/dataModel.Transportation/dateObserved": {
            "type": "Property",
            "value": f"{z(START)}/{z(END)}",
        },
        "flow": {"type": "Property", "value": 42},
    }
    context = [
        {"flow": {"@id": "https://smartdatamodels.org/dataModel.Transportation/intensity"}},
        *SDM_CONTEXT,
    ]
    response = send(client, source_key, notification(entity, context=context))
    assert response.status_code == 200, response.text
    assert readings(server)[0][3] == 42


def test_another_entity_type_is_refused_by_name(
    client: httpx.Client, source_key: str, sensors: list[str]
) -> None:
    entity = {**normalized(sensors[0]), "type": "ParkingSpot"}
    body = problem(send(client, source_key, notification(entity)), 400, "BadRequestData")
    assert body["entities"][0]["attribute"] == "type"
    assert "TrafficFlowObserved" in body["entities"][0]["reason"]


@pytest.mark.parametrize(
    ("content", "kind", "status", "error"),
    [
        (b'{"data": [', "application/json", 400, "InvalidRequest"),
        (b'{"type": "Notification"}', "application/ld+json", 400, "BadRequestData"),
        (b"[]", "application/json", 400, "BadRequestData"),
        (b"{}", "text/plain", 415, None),
    ],
)
def test_a_body_that_is_not_a_notification_is_a_problem(
    client: httpx.Client,
    source_key: str,
    content: bytes,
    kind: str,
    status: int,
    error: str | None,
) -> None:
    response = client.post(
        NOTIFY, content=content, headers={"Content-Type": kind, "X-API-Key": source_key}
    )
    problem(response, status, error)


def test_notifications_need_a_source_key(
    client: httpx.Client, server: RunningServer, sensors: list[str]
) -> None:
    body = notification(normalized(sensors[0]))
    assert problem(send(client, None, body), 401)["code"] == "unauthenticated"
    operator = make_key(server, "operator")
    assert problem(send(client, operator, body), 403)["code"] == "forbidden"


# --- publishing entities -------------------------------------------------------------------------


def get(client: httpx.Client, key: str, **params: Any) -> httpx.Response:
    return client.get(ENTITIES, params=params, headers=auth(key))


@pytest.fixture
def operator(server: RunningServer) -> str:
    return make_key(server, "operator")


@pytest.fixture
def observed(client: httpx.Client, source_key: str, sensors: list[str]) -> list[str]:
    """An older and a newer reading of the first sensor, one reading of the second."""
    older = normalized(sensors[0], 50, END - timedelta(minutes=5))
    counts = [normalized(sensors[0], 197), older, normalized(sensors[1], 80)]
    response = send(client, source_key, notification(*counts))
    assert response.json()["accepted"] == 3, response.text
    return sensors


def test_traffic_flow_observed_is_each_sensors_latest_reading(
    client: httpx.Client, operator: str, observed: list[str]
) -> None:
    response = get(client, operator, type="TrafficFlowObserved")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["link"] == LINK
    first, second = response.json()
    assert [first["id"], second["id"]] == [
        f"urn:ngsi-ld:TrafficFlowObserved:{s}" for s in observed[:2]
    ]
    assert first["type"] == "TrafficFlowObserved"
    assert first["dateObserved"] == {"type": "Property", "value": f"{z(START)}/{z(END)}"}
    assert first["dateObservedTo"]["value"] == {"@type": "DateTime", "@value": z(END)}
    assert first["intensity"] == {"type": "Property", "value": 197, "observedAt": z(END)}
    assert first["averageVehicleSpeed"]["value"] == pytest.approx(52.6)
    assert first["averageVehicleSpeed"]["unitCode"] == "KMH"
    assert first["occupancy"]["value"] == pytest.approx(0.76)
    assert first["laneId"] == {"type": "Property", "value": 1}
    assert first["refDevice"] == {
        "type": "Relationship",
        "object": f"urn:ngsi-ld:Device:{observed[0]}",
    }
    assert first["location"] == {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [107.58, 16.46]},
    }


@pytest.mark.parametrize(
    ("options", "intensity", "location"),
    [
        (
            "concise",
            {"value": 197, "observedAt": z(END)},
            {"type": "Point", "coordinates": [107.58, 16.46]},
        ),
        ("keyValues", 197, {"type": "Point", "coordinates": [107.58, 16.46]}),
    ],
)
def test_entities_come_in_the_form_asked_for(
    client: httpx.Client,
    operator: str,
    observed: list[str],
    options: str,
    intensity: Any,
    location: Any,
) -> None:
    [entity] = get(client, operator, type="TrafficFlowObserved", options=options, limit=1).json()
    assert entity["intensity"] == intensity
    assert entity["location"] == location
    relation = entity["refDevice"]
    assert relation in (
        {"object": f"urn:ngsi-ld:Device:{observed[0]}"},
        f"urn:ngsi-ld:Device:{observed[0]}",
    )


def test_json_ld_answers_carry_the_context_in_each_entity(
    client: httpx.Client, operator: str, observed: list[str]
) -> None:
    response = client.get(
        ENTITIES,
        params={"type": "TrafficFlowObserved"},
        headers={**auth(operator), "Accept": "application/ld+json"},
    )
    assert response.headers["content-type"].startswith("application/ld+json")
    assert all(e["@context"] == SDM_CONTEXT for e in response.json())


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("intensity>100", [0]),
        ("intensity>=80;intensity<100", [1]),
        ("intensity==80|intensity==197", [0, 1]),
        ("intensity==70..90", [1]),
        ("intensity==80,197", [0, 1]),
        ("intensity!=80", [0]),
        ("(intensity>100|intensity<60);laneId==1", [0]),
        ("averageVehicleSpeed", [0, 1]),
        ("refDevice==urn:ngsi-ld:Device:HUE-TS-002", [1]),
        ("congested==true", []),  # an attribute these entities do not have matches nothing
        ('name~="(?i)nút giao 1"', [1]),
        (f"dateObserved>={z(END)}", [0, 1]),
        (f"dateObserved<{z(END)}", []),
    ],
)
def test_q_filters_the_entities(
    client: httpx.Client, operator: str, observed: list[str], q: str, expected: list[int]
) -> None:
    response = get(client, operator, type="TrafficFlowObserved", q=q)
    assert response.status_code == 200, response.text
    ids = [e["id"] for e in response.json()]
    assert ids == [f"urn:ngsi-ld:TrafficFlowObserved:{observed[i]}" for i in expected]


@pytest.mark.parametrize(
    ("q", "kind"),
    [
        ("intensity>", "InvalidRequest"),
        ("(intensity>1", "InvalidRequest"),
        ('name=="unclosed', "InvalidRequest"),
        ('intensity>"many"', "BadRequestData"),
        ("name==Hue", "BadRequestData"),
        ("dateObserved>yesterday", "BadRequestData"),
        ('name~="(unbalanced"', "BadRequestData"),
    ],
)
def test_a_q_that_cannot_be_read_is_a_problem_naming_it(
    client: httpx.Client, operator: str, q: str, kind: str
) -> None:
    body = problem(get(client, operator, type="TrafficFlowObserved", q=q), 400, kind)
    assert body["detail"].startswith("q:")


@pytest.mark.parametrize(
    ("georel", "geometry", "coordinates", "expected"),
    [
        ("near;maxDistance==500", "Point", "[107.581,16.461]", [0]),
        ("near;maxDistance==2000", "Point", "[107.585,16.46]", [0, 1]),
        ("near;minDistance==500", "Point", "[107.581,16.461]", [1]),
        (
            "within",
            "Polygon",
            "[[[107.575,16.455],[107.585,16.455],[107.585,16.465],[107.575,16.465],[107.575,16.455]]]",
            [0],
        ),
        (
            "disjoint",
            "Polygon",
            "[[[107.575,16.455],[107.585,16.455],[107.585,16.465],[107.575,16.465],[107.575,16.455]]]",
            [1],
        ),
        ("equals", "Point", "[107.58,16.46]", [0]),
    ],
)
def test_geo_queries_filter_by_location(
    client: httpx.Client,
    operator: str,
    observed: list[str],
    georel: str,
    geometry: str,
    coordinates: str,
    expected: list[int],
) -> None:
    response = get(
        client,
        operator,
        type="TrafficFlowObserved",
        georel=georel,
        geometry=geometry,
        coordinates=coordinates,
    )
    assert response.status_code == 200, response.text
    ids = [e["id"] for e in response.json()]
    assert ids == [f"urn:ngsi-ld:TrafficFlowObserved:{observed[i]}" for i in expected]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"georel": "near;maxDistance==5"}, "geometry"),
        ({"georel": "near", "geometry": "Point", "coordinates": "[1,2]"}, "georel"),
        ({"georel": "within", "geometry": "Point", "coordinates": "[1,2]"}, "geometry"),
        ({"georel": "within", "geometry": "Polygon", "coordinates": "[[1,2]]"}, "coordinates"),
        (
            {"georel": "near;maxDistance==5", "geometry": "Point", "coordinates": "[200,1]"},
            "coordinates",
        ),
        ({"georel": "overlaps", "geometry": "Polygon", "coordinates": "[]"}, "georel"),
    ],
)
def test_a_bad_geo_query_names_the_parameter(
    client: httpx.Client, operator: str, params: dict[str, str], field: str
) -> None:
    body = problem(get(client, operator, type="TrafficFlowObserved", **params), 400)
    assert body["detail"].startswith(f"{field}:"), body


def test_pages_follow_limit_and_offset_with_the_count_in_a_header(
    client: httpx.Client, operator: str, observed: list[str]
) -> None:
    first = get(client, operator, type="TrafficFlowObserved", limit=1, count="true")
    assert first.headers["NGSILD-Results-Count"] == "2"
    assert [e["id"].rsplit(":", 1)[1] for e in first.json()] == [observed[0]]
    assert 'rel="next"' in first.headers["link"] and "offset=1" in first.headers["link"]
    second = get(client, operator, type="TrafficFlowObserved", limit=1, offset=1)
    assert [e["id"].rsplit(":", 1)[1] for e in second.json()] == [observed[1]]
    assert "NGSILD-Results-Count" not in second.headers
    only = get(client, operator, type="TrafficFlowObserved", limit=0, count="true")
    assert (only.json(), only.headers["NGSILD-Results-Count"]) == ([], "2")
    problem(get(client, operator, type="TrafficFlowObserved", limit=0), 400, "BadRequestData")


def test_id_and_attrs_select_entities_and_attributes(
    client: httpx.Client, operator: str, observed: list[str]
) -> None:
    wanted = f"urn:ngsi-ld:TrafficFlowObserved:{observed[1]}"
    [entity] = get(
        client, operator, type="TrafficFlowObserved", id=wanted, attrs="intensity"
    ).json()
    assert set(entity) == {"id", "type", "intensity"} and entity["id"] == wanted


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "type"),
        ({"type": "TrafficFlowObserved,Alert"}, "type"),
        ({"type": "Alert", "idPattern": ".*"}, "idPattern"),
        ({"type": "Alert", "options": "sysAttrs"}, "options"),
        ({"type": "Alert", "limit": "5000"}, "limit"),
    ],
)
def test_parameters_not_offered_are_refused_by_name(
    client: httpx.Client, operator: str, params: dict[str, str], field: str
) -> None:
    body = problem(get(client, operator, **params), 400, "BadRequestData")
    assert body["detail"].startswith(f"{field}:"), body


def test_a_type_nothing_is_published_as_has_no_entities(
    client: httpx.Client, operator: str
) -> None:
    response = get(client, operator, type="ParkingSpot", count="true")
    assert (response.status_code, response.json()) == (200, [])
    assert response.headers["NGSILD-Results-Count"] == "0"


def test_reads_need_a_reading_role(client: httpx.Client, source_key: str) -> None:
    assert problem(client.get(ENTITIES, params={"type": "Alert"}), 401)["code"] == "unauthenticated"
    assert problem(get(client, source_key, type="Alert"), 403)["code"] == "forbidden"


# --- alerts and service requests --------------------------------------------------------------


def insert_alert(server: RunningServer, **fields: Any) -> int:
    row = {
        "subject_kind": "sensor",
        "subject_id": "HUE-TS-001",
        "rule": "congestion",
        "level": "warning",
        "severity": "warning",
        "agency": None,
        "category": None,
        "title": "Ùn tắc tại Nút giao 0",
        "lon": 107.58,
        "lat": 16.46,
        "raised_at": END,
        "resolved_at": None,
        "digest": False,
        **fields,
    }
    names = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    with psycopg.connect(server.db_url) as conn:
        found = conn.execute(
            f"INSERT INTO alerts ({names}) VALUES ({marks}) RETURNING id", list(row.values())
        ).fetchone()
        assert found is not None
        return int(found[0])


def test_alerts_are_the_open_alerts_in_the_alert_model(
    client: httpx.Client, server: RunningServer, operator: str
) -> None:
    congestion = insert_alert(server)
    deadline = insert_alert(
        server,
        subject_kind="ticket",
        subject_id="7",
        rule="deadline",
        level="overdue",
        severity="critical",
        agency="ioc",
        category="moi_truong",
        title="Quá hạn xử lý phản ánh #7",
    )
    insert_alert(server, subject_id="HUE-TS-002", resolved_at=END)
    first, second = get(client, operator, type="Alert").json()
    assert first["id"] == f"urn:ngsi-ld:Alert:{congestion}"
    assert first["category"]["value"] == "traffic"
    assert first["subCategory"]["value"] == "trafficJam"
    assert first["severity"]["value"] == "medium"
    assert first["dateIssued"]["value"] == {"@type": "DateTime", "@value": z(END)}
    assert first["alertSource"] == {
        "type": "Relationship",
        "object": "urn:ngsi-ld:TrafficFlowObserved:HUE-TS-001",
    }
    assert first["location"]["value"]["coordinates"] == [107.58, 16.46]
    assert second["id"] == f"urn:ngsi-ld:Alert:{deadline}"
    assert (second["category"]["value"], second["severity"]["value"]) == ("environment", "critical")
    assert second["alertSource"]["object"] == "urn:ngsi-ld:Open311ServiceRequest:7"
    assert second["data"]["value"]["rule"] == "deadline"
    for q in (
        'severity=="critical"',
        'data[rule]=="deadline"',
        "data[acknowledged]==false;alertSource==urn:ngsi-ld:Open311ServiceRequest:7",
    ):
        found = get(client, operator, type="Alert", q=q).json()
        assert [a["id"] for a in found] == [second["id"]], q
    agency = make_key(server, "agency", agency="ioc")
    assert [a["id"] for a in get(client, agency, type="Alert").json()] == [second["id"]]


def test_service_requests_are_the_open_tickets_without_personal_data(
    client: httpx.Client, server: RunningServer, source_key: str, operator: str
) -> None:
    reporter = {"name": "Nguyễn Văn Bình", "phone": "0912345678", "email": "binh@example.vn"}
    for number, category in enumerate(("moi_truong", "giao_thong")):
        report = {
            "kind": "field_report",
            "external_id": f"HS-NGSI-{number}",
            "category": category,
            "description": "Rác thải tồn đọng trên đường Lê Lợi",
            "lon": 107.5905 + number / 10,
            "lat": 16.4637,
            "occurred_at": z(END),
            "address": "12 Lê Lợi, Phường Thuận Hóa",
            "reporter": reporter,
        }
        created = client.post("/v1/events", json=report, headers=auth(source_key))
        assert created.status_code == 201, created.text
    with psycopg.connect(server.db_url) as conn:
        tickets = [r[0] for r in conn.execute("SELECT id FROM tickets ORDER BY id").fetchall()]
        conn.execute("UPDATE tickets SET state = 'closed' WHERE id = %s", (tickets[1],))
    response = get(client, operator, type="Open311ServiceRequest")
    assert response.status_code == 200, response.text
    for secret in (*reporter.values(), "reporter"):
        assert secret not in response.text
    [request] = response.json()
    assert request["id"] == f"urn:ngsi-ld:Open311ServiceRequest:{tickets[0]}"
    assert request["service_request_id"]["value"] == str(tickets[0])
    assert request["status"]["value"] == "open"
    assert request["service_code"]["value"] == "moi_truong"
    assert request["requested_datetime"]["value"]["@type"] == "DateTime"
    assert request["address_string"]["value"] == "12 Lê Lợi, Phường Thuận Hóa"
    assert request["location"]["value"] == {"type": "Point", "coordinates": [107.5905, 16.4637]}
    near = get(
        client,
        operator,
        type="Open311ServiceRequest",
        georel="near;maxDistance==100",
        geometry="Point",
        coordinates="[107.5905,16.4637]",
        q='service_code=="moi_truong"',
    ).json()
    assert [r["id"] for r in near] == [request["id"]]


def test_the_openapi_document_declares_problem_details(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    for path in ("/ngsi-ld/v1/notify", "/ngsi-ld/v1/entities"):
        for operation in document["paths"][path].values():
            declared = operation["responses"]
            assert {"400", "401", "403", "503"} <= set(declared), path
            schema = declared["400"]["content"]["application/json"]["schema"]
            assert {"type", "title", "status", "detail"} <= set(schema["required"])


@pytest.mark.parametrize(
    "params", [{"type": "Alert", "q": 'description=="a\x00b"'}, {"type": "a\x00b"}]
)
def test_nul_in_a_parameter_is_a_bad_request_data_problem(
    client: httpx.Client, operator: str, params: dict[str, str]
) -> None:
    body = problem(get(client, operator, **params), 400, "BadRequestData")
    assert "NUL" in body["detail"]
