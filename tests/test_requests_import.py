"""Historical 311 requests imported as tickets, and the review checked against the file itself.

A small generated file in the Open Baltimore layout runs everywhere; the real sample in
../shared/data/requests is checked too where it exists.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from ingest.requests311 import (
    BALTIMORE_CENTRE,
    BALTIMORE_ZONE,
    agency_code,
    category_of,
    place_of,
    read_baltimore_csv,
    us_calendar,
)
from ioc.settings import Settings
from tests.conftest import RunningServer, auth, make_key, start_server, stop_server
from tests.test_replay import shared_data

REPO = Path(__file__).resolve().parent.parent
REAL = (shared_data("requests") or REPO / "absent") / "baltimore_311_sample.csv"
NEW_YORK = ZoneInfo(BALTIMORE_ZONE)
FORMAT = "%m/%d/%Y %I:%M:%S %p"
COLUMNS = [
    "SRRecordID", "ServiceRequestNum", "SRType", "MethodReceived", "CreatedDate", "SRStatus",
    "StatusDate", "DueDate", "CloseDate", "Agency", "LastActivity", "LastActivityDate",
    "Outcome", "Address", "ZipCode", "Neighborhood", "CouncilDistrict", "PoliceDistrict",
    "PolicePost", "Latitude", "Longitude", "GeoLocation", "2010 Census Wards Precincts",
    "2010 Census Neighborhoods", "Zip Codes", "DaysOpen",
]  # fmt: skip
TYPES = [
    ("SW-Dirty Alley", "Solid Waste"),
    ("TRM-Pothole Repair", "Transportation"),
    ("WW-Water Leak (Exterior)", "Water Wastewater"),
    ("BGE-StLight(s) Out", "BGE"),
    ("ECC-Vehicle Look Up", "Call Center"),
]


def generated_rows(count: int = 60) -> list[dict[str, str]]:
    """Requests over two months of 2018 with varied times to close, some late, some open."""
    rows = []
    start = datetime(2018, 3, 1, 8, 15)
    for n in range(count):
        created = start + timedelta(hours=7 * n + (n % 5))
        kind, agency = TYPES[n % len(TYPES)]
        due = created + timedelta(days=1 + n % 4)
        closed = None if n % 11 == 3 else created + timedelta(hours=3 + (n * 13) % 120)
        rows.append(
            {
                "SRRecordID": f"18-{n:08d}",
                "ServiceRequestNum": f"18-{n:08d}",
                "SRType": kind,
                "MethodReceived": "Phone",
                "CreatedDate": created.strftime(FORMAT),
                "SRStatus": "Open" if closed is None else "Closed",
                "DueDate": "" if n % 13 == 5 else due.strftime(FORMAT),
                "CloseDate": "" if closed is None else closed.strftime(FORMAT),
                "Agency": agency,
                "Address": f"{100 + n} N CHARLES ST",
                "Neighborhood": "Downtown",
                "Latitude": "" if n % 7 == 2 else f"{39.29 + n / 1000:.6f}",
                "Longitude": "" if n % 7 == 2 else f"{-76.61 - n / 1000:.6f}",
            }
        )
    return rows


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in COLUMNS})
    return path


def ioc(*args: str, db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioc.cli", *args],
        env={**os.environ, "IOC_DATABASE_URL": db_url, "IOC_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


@pytest.fixture
def baltimore(settings: Settings) -> Iterator[RunningServer]:
    """A server that cuts days and months in Baltimore's zone, like the history it reviews."""
    thread, running = start_server(settings.model_copy(update={"timezone": BALTIMORE_ZONE}))
    yield running
    stop_server(thread)


def expected(path: Path) -> dict[str, Any]:
    """On-time rate and time to close straight from the file (csv and the calendar only)."""
    calendar = us_calendar()
    judged = on_time = 0
    office_h: list[float] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            created = datetime.strptime(row["CreatedDate"], FORMAT).replace(tzinfo=NEW_YORK)
            if not row["CloseDate"]:
                continue
            closed = datetime.strptime(row["CloseDate"], FORMAT).replace(tzinfo=NEW_YORK)
            office_h.append(calendar.between(created, closed) / 3600)
            if row["DueDate"]:
                due = datetime.strptime(row["DueDate"], FORMAT).replace(tzinfo=NEW_YORK)
                judged += 1
                on_time += closed <= due
    return {"on_time_rate": on_time / judged, "office_h": sorted(office_h)}


def check_review(server: RunningServer, path: Path, since: str, until: str) -> dict[str, Any]:
    key = make_key(server, "leader")
    with httpx.Client(base_url=server.url, timeout=120) as client:
        answer = client.get(
            "/v1/review", params={"since": since, "until": until}, headers=auth(key)
        )
        assert answer.status_code == 200, answer.text
        total = answer.json()["tables"]["agencies"]["rows"][0]
        sheet = client.get(
            "/review/agencies.csv", params={"since": since, "until": until}, headers=auth(key)
        )
        assert sheet.status_code == 200, sheet.text
    direct = expected(path)
    assert total["agency"] is None and total["on_time_rate"] == round(direct["on_time_rate"], 4)
    hours = direct["office_h"]
    median = statistics.median(hours)
    # Read from 2 %-wide bins; the two middle values bound the exact median.
    low, high = hours[(len(hours) - 1) // 2], hours[len(hours) // 2]
    assert low / 1.02 - 0.005 <= total["resolution_median_h"] <= high * 1.02 + 0.005, (
        total["resolution_median_h"],
        median,
    )
    first = next(csv.DictReader(sheet.content.decode("utf-8-sig").splitlines()))
    assert first["on_time_rate"] == str(total["on_time_rate"])
    assert first["resolution_median_h"] == str(total["resolution_median_h"])
    return total


def test_generated_requests_review_as_the_file_says(
    tmp_path: Path, db_url: str, baltimore: RunningServer
) -> None:
    rows = generated_rows()
    path = write(tmp_path / "requests.csv", rows)
    done = ioc("import", "requests", str(path), db_url=db_url)
    assert done.returncode == 0, done.stderr
    assert "60 tickets imported (54 closed)" in done.stdout
    assert "9 had no usable location" in done.stdout
    total = check_review(baltimore, path, "2018-03", "2018-04")
    assert total["received"] == 60 and total["resolved"] == 54
    assert total["response_median_h"] is None  # the source does not say when work started


def test_importing_twice_adds_nothing_and_bad_rows_are_named(tmp_path: Path, db_url: str) -> None:
    rows = generated_rows(10)
    rows.append({**rows[0], "ServiceRequestNum": "18-bad", "CreatedDate": "31/31/2018"})
    path = write(tmp_path / "requests.csv", rows)
    first = ioc("import", "requests", str(path), db_url=db_url)
    assert first.returncode == 0, first.stderr
    assert "line 12:" in first.stderr and "left out" in first.stderr
    again = ioc("import", "requests", str(path), db_url=db_url)
    assert again.returncode == 0 and "0 tickets imported" in again.stdout
    assert "10 were already imported" in again.stdout
    with psycopg.connect(db_url) as conn:
        count = conn.execute("SELECT count(*) FROM tickets").fetchone()
        history = conn.execute(
            "SELECT action, to_state, at FROM ticket_events e JOIN field_reports f"
            " ON f.ticket_id = e.ticket_id WHERE f.external_id = '18-00000000' ORDER BY e.id"
        ).fetchall()
    assert count is not None and count[0] == 10
    created = datetime(2018, 3, 1, 8, 15, tzinfo=NEW_YORK)
    assert [(a, s) for a, s, _ in history] == [
        ("open", "new"),
        ("resolve", "resolved"),
        ("close", "closed"),
    ]
    assert history[0][2] == created and history[1][2] == created + timedelta(hours=3)


def test_a_file_that_is_not_a_311_export_is_refused(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    done = ioc("import", "requests", str(path), db_url=db_url)
    assert done.returncode != 0 and "not an Open Baltimore 311 export" in done.stderr
    assert "ServiceRequestNum" in done.stderr


def test_placeholder_coordinates_are_treated_as_missing(tmp_path: Path, db_url: str) -> None:
    rows = generated_rows(10)  # rows 2 and 9 have no coordinates
    placeholders = {
        0: ("39", "-77"),  # the export's usual placeholder
        1: ("39.000000", "-76.000000"),
        3: ("0", "0"),
        4: ("40.712800", "-74.006000"),  # New York: no place of Baltimore's 311
    }
    for n, (lat, lon) in placeholders.items():
        rows[n] |= {"Latitude": lat, "Longitude": lon}
    rows[5] |= {"Latitude": "39.433000", "Longitude": ""}  # half a place is no place
    path = write(tmp_path / "requests.csv", rows)
    read = read_baltimore_csv(path)
    unplaced = sorted(int(r.external_id[3:]) for r in read.requests if r.lon is None)
    assert unplaced == [0, 1, 2, 3, 4, 5, 9] and read.placeholders == 4
    assert all(r.lat is None for r in read.requests if r.lon is None)
    done = ioc("import", "requests", str(path), db_url=db_url)
    assert done.returncode == 0, done.stderr
    assert "7 had no usable location and were placed at the default" in done.stdout
    with psycopg.connect(db_url) as conn:
        placed = dict(
            conn.execute(
                "SELECT f.external_id, (t.lon, t.lat, t.routing->>'location') FROM tickets t"
                " JOIN field_reports f ON f.id = t.report_id"
            ).fetchall()
        )
    centre = (str(BALTIMORE_CENTRE[0]), str(BALTIMORE_CENTRE[1]), "default")
    for n in unplaced:
        assert placed[f"18-{n:08d}"] == centre
    assert placed["18-00000006"] == ("-76.616", "39.296", "given")


def test_real_points_near_the_city_are_kept() -> None:
    assert place_of("-76.610600", "39.290900") == (-76.6106, 39.2909)
    assert place_of("-76.824982", "39.657851") is not None  # in the county, 45 km out
    assert place_of("-77", "39") is None and place_of("-76.61", "") is None
    assert place_of("abc", "39.29") is None


def test_types_and_agencies_map_to_codes() -> None:
    assert category_of("SW-Rat Rubout Proactive") == "moi_truong"
    assert category_of("TRM-Pothole Repair") == "ha_tang"
    assert category_of("BGE-StLight(s) Out") == "chieu_sang"
    assert category_of("ECC-Vehicle Look Up") == "khac"
    assert agency_code("Recreation & Parks") == "bmore-recreation-parks"
    assert agency_code("Mayor's Office") == "bmore-mayor-s-office"


@pytest.mark.skipif(
    not REAL.exists(), reason="the shared Baltimore 311 sample is not beside the checkout"
)
def test_the_real_baltimore_sample_reviews_as_the_file_says(
    db_url: str, baltimore: RunningServer
) -> None:
    read = read_baltimore_csv(REAL)
    assert len(read.requests) == 10_000 and not read.problems
    done = ioc("import", "requests", str(REAL), db_url=db_url)
    assert done.returncode == 0, done.stderr
    assert "10000 tickets imported (9792 closed)" in done.stdout
    # 590 without coordinates and 892 with placeholders (39, −77 and the like).
    assert "1482 had no usable location" in done.stdout
    total = check_review(baltimore, REAL, "2014-01", "2019-02")
    assert total["received"] == 10_000
    assert total["on_time_rate"] == 0.836  # 7,988 of the 9,555 closed requests with a due date
