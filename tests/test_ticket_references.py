"""A ticket's opening report, a ticket event's ticket (migration 0032), a report's category and
a ticket's agency (0033) are checked once a statement, with the foreign key's own error: a
missing key is refused, the whole statement with it, and a referenced row cannot be deleted or
given another key, even by a transaction racing the one that refers to it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

REPORT = """INSERT INTO field_reports (source, external_id, category, description, lon, lat,
                                       occurred_at)
            VALUES ('test', %s, 'moi_truong', 'Rác thải', 107.58, 16.46, now()) RETURNING id"""
TICKET = """INSERT INTO tickets (report_id, category, state, routing, lon, lat, opened_at,
                                 updated_at)
            SELECT r, 'moi_truong', 'new', '{}', 107.58, 16.46, now(), now()
            FROM unnest(%s::bigint[]) AS r RETURNING id"""
EVENT = """INSERT INTO ticket_events (ticket_id, at, actor, action, to_state)
           SELECT t, now(), 'test', 'open', 'new' FROM unnest(%s::bigint[]) AS t"""


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def _report(conn: psycopg.Connection, external_id: str) -> int:
    row = conn.execute(REPORT, (external_id,)).fetchone()
    assert row is not None
    return int(row[0])


def _tickets(conn: psycopg.Connection, reports: list[int]) -> list[int]:
    return [int(r[0]) for r in conn.execute(TICKET, (reports,)).fetchall()]


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_a_ticket_for_a_missing_report_is_refused_with_the_whole_statement(
    conn: psycopg.Connection,
) -> None:
    good = _report(conn, "R-1")
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        _tickets(conn, [good, 987654321])
    diag = refused.value.diag
    assert diag.constraint_name == "tickets_report_id_fkey"
    assert (diag.table_name, diag.column_name) == ("tickets", "report_id")
    assert diag.message_detail == (
        'Key (report_id)=(987654321) is not present in table "field_reports".'
    )
    assert _count(conn, "tickets") == 0  # the good row went with the statement
    assert len(_tickets(conn, [good])) == 1


def test_an_event_of_a_missing_ticket_is_refused(conn: psycopg.Connection) -> None:
    (ticket,) = _tickets(conn, [_report(conn, "R-2")])
    conn.execute(EVENT, ([ticket],))
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute(EVENT, ([ticket, ticket + 1000],))
    diag = refused.value.diag
    assert diag.constraint_name == "ticket_events_ticket_id_fkey"
    assert (diag.table_name, diag.column_name) == ("ticket_events", "ticket_id")
    assert f"Key (ticket_id)=({ticket + 1000})" in (diag.message_detail or "")
    assert _count(conn, "ticket_events") == 1
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("UPDATE ticket_events SET ticket_id = %s", (ticket + 1000,))


def test_a_ticket_cannot_be_moved_to_a_missing_report(conn: psycopg.Connection) -> None:
    (ticket,) = _tickets(conn, [_report(conn, "R-3")])
    other = _report(conn, "R-4")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("UPDATE tickets SET report_id = 987654321 WHERE id = %s", (ticket,))
    conn.execute("UPDATE tickets SET report_id = %s WHERE id = %s", (other, ticket))
    conn.execute("UPDATE tickets SET state = 'triaged' WHERE id = %s", (ticket,))  # unchecked


def test_referenced_rows_cannot_be_deleted_or_renumbered(conn: psycopg.Connection) -> None:
    report = _report(conn, "R-5")
    (ticket,) = _tickets(conn, [report])
    conn.execute(EVENT, ([ticket],))
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute("DELETE FROM field_reports WHERE id = %s", (report,))
    assert refused.value.diag.constraint_name == "tickets_report_id_fkey"
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute("DELETE FROM tickets WHERE id = %s", (ticket,))
    assert refused.value.diag.constraint_name == "ticket_events_ticket_id_fkey"
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("UPDATE tickets SET id = id + 1000 WHERE id = %s", (ticket,))
    # Unreferenced rows go as before.
    lone = _report(conn, "R-6")
    conn.execute("DELETE FROM field_reports WHERE id = %s", (lone,))
    (bare,) = _tickets(conn, [_report(conn, "R-7")])
    conn.execute("DELETE FROM tickets WHERE id = %s", (bare,))


def test_a_report_of_an_unknown_category_is_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute(
            """INSERT INTO field_reports (source, external_id, category, description, lon, lat,
                                          occurred_at)
               VALUES ('test', 'C-1', 'moi_truong', 'a', 107.5, 16.4, now()),
                      ('test', 'C-2', 'khong_co', 'b', 107.5, 16.4, now())"""
        )
    diag = refused.value.diag
    assert diag.constraint_name == "field_reports_category_fkey"
    assert (diag.table_name, diag.column_name) == ("field_reports", "category")
    assert diag.message_detail == 'Key (category)=(khong_co) is not present in table "categories".'
    assert _count(conn, "field_reports") == 0
    report = _report(conn, "C-3")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("UPDATE field_reports SET category = 'khong_co' WHERE id = %s", (report,))


def test_a_ticket_of_an_unknown_agency_is_refused_none_is_the_unrouted_queue(
    conn: psycopg.Connection,
) -> None:
    (ticket,) = _tickets(conn, [_report(conn, "A-1")])  # agency NULL: allowed
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute("UPDATE tickets SET agency = 'khong_co' WHERE id = %s", (ticket,))
    assert refused.value.diag.constraint_name == "tickets_agency_fkey"
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute(
            """INSERT INTO tickets (report_id, category, state, agency, routing, lon, lat,
                                    opened_at, updated_at)
               VALUES (%s, 'moi_truong', 'new', 'khong_co', '{}', 107.5, 16.4, now(), now())""",
            (_report(conn, "A-2"),),
        )
    assert refused.value.diag.message_detail == (
        'Key (agency)=(khong_co) is not present in table "agencies".'
    )
    conn.execute("UPDATE tickets SET agency = 'ioc' WHERE id = %s", (ticket,))


def test_a_code_in_use_cannot_go_others_and_names_can(conn: psycopg.Connection) -> None:
    (ticket,) = _tickets(conn, [_report(conn, "K-1")])
    conn.execute("UPDATE tickets SET agency = 'ioc' WHERE id = %s", (ticket,))
    for statement, constraint in (
        ("DELETE FROM categories WHERE code = 'moi_truong'", "field_reports_category_fkey"),
        ("UPDATE categories SET code = 'moi_truong_2' WHERE code = 'moi_truong'", None),
        ("DELETE FROM agencies WHERE code = 'ioc'", "tickets_agency_fkey"),
        ("UPDATE agencies SET code = 'ioc_2' WHERE code = 'ioc'", None),
    ):
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
            conn.execute(statement)
        if constraint is not None:
            assert refused.value.diag.constraint_name == constraint
    conn.execute("UPDATE categories SET name_vi = 'Môi trường đô thị' WHERE code = 'moi_truong'")
    conn.execute(
        "INSERT INTO categories (code, name_vi, default_deadline_hours) VALUES ('tam_thoi', 'Tạm thời', 24)"
        " ON CONFLICT DO NOTHING"
    )
    conn.execute("DELETE FROM categories WHERE code = 'tam_thoi'")


def test_removing_a_code_waits_for_the_reports_being_written_and_then_is_refused(
    db_url: str,
) -> None:
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute(
            "INSERT INTO categories (code, name_vi, default_deadline_hours) VALUES ('dua_tranh', 'Đua tranh', 24)"
            " ON CONFLICT DO NOTHING"
        )
    outcome: list[BaseException | None] = []
    with psycopg.connect(db_url) as writer:
        writer.execute(
            """INSERT INTO field_reports (source, external_id, category, description, lon, lat,
                                          occurred_at)
               VALUES ('test', 'D-1', 'dua_tranh', 'a', 107.5, 16.4, now())"""
        )  # not yet committed

        def remove() -> None:
            try:
                with psycopg.connect(db_url, autocommit=True) as admin:
                    admin.execute("DELETE FROM categories WHERE code = 'dua_tranh'")
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        remover = threading.Thread(target=remove)
        remover.start()
        remover.join(timeout=1.0)
        assert remover.is_alive()  # held back by the report being written
        writer.commit()
        remover.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], psycopg.errors.ForeignKeyViolation)
    with psycopg.connect(db_url) as check:
        row = check.execute("SELECT count(*) FROM categories WHERE code = 'dua_tranh'").fetchone()
    assert row == (1,)
