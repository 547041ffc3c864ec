"""The OpenAPI document matches the server: schemathesis drives every documented operation of a
real running server, with every check it has, once with an admin key and once with a source key.

Requests the schema allows must be answered (not refused as invalid), requests it forbids must be
refused, every status and body must be documented, and no request may cause a server error.
WebSocket routes are not part of the OpenAPI document, so they are not exercised here; nothing
else is excluded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ioc.alerts.deliveries import encode_cursor as delivery_cursor
from ioc.alerts.queries import encode_cursor as alert_cursor
from ioc.tickets.queue import Cursor as TicketCursor
from tests.conftest import RunningServer, auth

# A few examples per operation keep the run to a few minutes; derandomized so that a failure
# seen once is seen again.
_SETTINGS = settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


# Rules JSON Schema cannot state: for these operations a schema-valid request may still be
# refused with 422 naming the field (Open311: 400), and positive_data_acceptance is told so (its
# other statuses stay as they are). Each entry gives the rules; everything else the operations
# check (enums, bounds, patterns, required fields, the fields each ticket action needs) is in
# the document, and the negative checks hold the server to it.
_SEMANTIC_422 = {
    ("POST", "/v1/events"): "a report's category and a count's sensor must be registered "
    "(reference data that changes at run time); a photo must be an image by its content; an "
    "online dossier needs online_level (one field required by another's value); a source key "
    "posts only for its own source (the caller)",
    ("POST", "/v1/events/batch"): "as for POST /v1/events, line by line",
    ("POST", "/v1/media"): "each file part must be an image (JPEG, PNG, WebP, HEIC) by its "
    "content, which no schema can say",
    ("GET", "/v1/tickets"): "category must be a category of this platform (reference data); "
    "bbox needs min ≤ max, latitudes within ±90 (one value's parts compared); until not before "
    "since (two parameters compared); both ISO 8601 times as Python reads them",
    ("POST", "/v1/silences"): "ends_at must lie in the future (the clock) and after starts_at "
    "(two fields compared)",
    ("GET", "/v1/wall/changes"): "since is the cursor of a previous answer: an ISO 8601 time "
    "with an offset PostgreSQL can hold",
    ("GET", "/v1/review"): "agency and category must exist (reference data); until not before "
    "since (two parameters compared)",
    ("GET", "/review/{table}.csv"): "as for GET /v1/review",
    ("PUT", "/v1/admin/config"): "rules, deadlines and parents must name agencies and "
    "categories that exist (in the same body or the reference data)",
    ("POST", "/v1/tickets/{ticket_id}/actions"): "transfer's to_agency must be an agency that "
    "exists (reference data); assign's assignee must be an official of the ticket's agency",
    ("POST", "/open311/v2/requests.{fmt}"): "service_code must be a service of this platform "
    "(reference data); the location must lie in the province (a polygon)",
    ("GET", "/ngsi-ld/v1/entities"): "type is required; q, georel, geometry and coordinates "
    "follow the NGSI-LD grammar; limit=0 needs count=true",
    ("POST", "/ngsi-ld/v1/notify"): "the entities must be TrafficFlowObserved of registered "
    "sensors, with dateObserved and intensity",
    ("POST", "/v1/tickets/{ticket_id}/triage"): "the reason must not be blank; a move needs "
    "its fields (category, lon and lat, into, report) and they must exist",
    ("POST", "/v1/users"): "a login's characters, a role for people, an agency that exists, a "
    "password of at least 10 characters",
    ("POST", "/v1/users/import"): "the body is a CSV file with a header row naming its columns",
    ("POST", "/v1/users/{login}/password"): "a password of at least 10 characters",
}
_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
_CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        # PostgreSQL text cannot hold NUL, and JSON Schema has no way to say so once for every
        # string of the document: the server refuses NUL everywhere (tests/test_api_inputs.py
        # shows it for each endpoint), so the generated strings leave it out.
        "generation": {"allow-x00": False},
        "operations": [
            {
                "include-name": f"{method} {path}",
                "checks": {
                    "positive_data_acceptance": {
                        # Open311 and NGSI-LD refuse with 400 (their specifications), the
                        # platform with 422.
                        "expected-statuses": [
                            *_ACCEPTED,
                            "400" if path.startswith(("/open311/", "/ngsi-ld/")) else "422",
                        ]
                    }
                },
            }
            for method, path in _SEMANTIC_422
        ],
    }
)


# Page cursors are opaque to clients; the document names each listing's cursor format, and
# here those formats are taught to schemathesis with the encoders the API itself uses, so the
# listings are checked without a 422 allowance.
schemathesis.openapi.format("alert-cursor", st.integers(1, 2**63 - 1).map(alert_cursor))
schemathesis.openapi.format("delivery-cursor", st.integers(1, 2**63 - 1).map(delivery_cursor))
schemathesis.openapi.format(
    "ticket-cursor",
    st.builds(
        lambda at, last: TicketCursor(at, last).encode(),
        st.none()
        | st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
        st.integers(0, 2**63 - 1),
    ),
)


@pytest.fixture
def api(server: RunningServer, request: pytest.FixtureRequest) -> Any:
    # schemathesis (4.32) renames the running test through the node's ``_nodeid``, which
    # pytest 9.2 no longer has; give it one so its lazy (fixture-loaded) schemas work.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=_CONFIG)


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@_SETTINGS
def test_as_admin(case: Any, admin_key: str) -> None:
    case.call_and_validate(headers=auth(admin_key))


@schema.parametrize()
@_SETTINGS
def test_as_source(case: Any, source_key: str) -> None:
    case.call_and_validate(headers=auth(source_key))
