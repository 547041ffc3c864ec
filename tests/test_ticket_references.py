"""A ticket's opening report and a ticket event's ticket are checked once a statement
(migration 0032), with the foreign key's own error: a missing key is refused, the whole
statement with it, and a referenced row cannot be deleted or given another id."""

from __future__ import annotations

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
