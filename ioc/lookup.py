"""The public lookup (công khai, minh bạch): what a citizen may see of a field report or a
dossier from its code alone, with no login.

A field report's code is ``PA-<report id>-<secret>`` (the secret is drawn by the database when
the report is stored; migration 0023); the source gets it back when it posts the report and
shows it to the citizen. A dossier's code is its one-stop-shop id, the one printed on the
receipt (giấy tiếp nhận và hẹn trả kết quả), as the national portal's lookup uses it.

What is shown: the state, the agency responsible (a public body), the category or procedure,
the deadline, the result, and the history as state changes with their times. What is never
shown: the description, address and reporter of a report, officials' names, the notes and
reasons of the history (they may name people). A code that does not exist and a code the
citizen may not see (a wrong secret, a category or procedure kept confidential) raise the very
same NotFound, after the very same one query.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final

import psycopg

from ioc.errors import NotFound

Conn = psycopg.AsyncConnection[Any]

REPORT_CODE: Final = re.compile(r"PA-([1-9][0-9]{0,17})-([0-9A-F]{8})")
MAX_CODE: Final = 128
# Said of every code that cannot be shown, whatever the reason.
NOT_FOUND: Final = "Không tìm thấy phản ánh hay hồ sơ nào có mã này"

TICKET_STATES: Final = {
    "new": "Mới tiếp nhận",
    "assigned": "Đã giao cán bộ xử lý",
    "in_progress": "Đang xử lý",
    "waiting": "Chờ người phản ánh bổ sung thông tin",
    "resolved": "Đã xử lý xong",
    "closed": "Đã kết thúc",
    "reopened": "Mở lại để xử lý tiếp",
    "rejected": "Không xử lý (không thuộc phạm vi hoặc trùng lặp)",
}
DOSSIER_STATES: Final = {
    "registered": "Đã đăng ký",
    "accepted": "Đã tiếp nhận",
    "refused": "Từ chối tiếp nhận",
    "in_processing": "Đang giải quyết",
    "supplement_requested": "Yêu cầu bổ sung hồ sơ",
    "supplement_received": "Đã nhận hồ sơ bổ sung",
    "fee_requested": "Yêu cầu thực hiện nghĩa vụ tài chính",
    "fee_paid": "Đã thực hiện nghĩa vụ tài chính",
    "processed": "Đã giải quyết xong, chờ trả kết quả",
    "result_returned": "Đã trả kết quả",
    "withdrawn": "Công dân rút hồ sơ",
    "stopped": "Dừng giải quyết",
}
RESULTS: Final = {"early": "Trước hạn", "on_time": "Đúng hạn", "late": "Quá hạn"}
NEW_APPOINTMENT: Final = "Hẹn lại ngày trả kết quả (cơ quan có văn bản xin lỗi)"


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the public history: when, the state reached, and its label."""

    at: datetime
    state: str
    label: str
    agency: str | None = None  # the agency's name when the step handed the case to it
    until: datetime | None = None  # a late dossier's new appointment date


@dataclass(frozen=True, slots=True)
class Status:
    """What the public lookup shows of one field report or dossier."""

    kind: str  # field_report or dossier
    code: str
    subject: str  # the category's or procedure's name
    state: str
    state_label: str
    agency: str | None
    opened_at: datetime | None
    deadline_at: datetime | None
    finished_at: datetime | None
    result: str | None
    history: tuple[Step, ...]

    def as_dict(self, zone: tzinfo) -> dict[str, Any]:
        def local(at: datetime | None) -> str | None:
            return None if at is None else at.astimezone(zone).isoformat(timespec="seconds")

        return {
            "kind": self.kind,
            "code": self.code,
            "subject": self.subject,
            "state": self.state,
            "state_label": self.state_label,
            "agency": self.agency,
            "opened_at": local(self.opened_at),
            "deadline_at": local(self.deadline_at),
            "finished_at": local(self.finished_at),
            "result": self.result,
            "result_label": RESULTS.get(self.result or ""),
            "time_zone": str(zone),
            "history": [
                {
                    "at": local(s.at),
                    "state": s.state,
                    "label": s.label,
                    "agency": s.agency,
                    "new_appointment_at": local(s.until),
                }
                for s in self.history
            ],
        }


def report_code(report_id: int, secret: str) -> str:
    return f"PA-{report_id}-{secret}"


async def code_of_report(conn: Conn, source: str, external_id: str) -> str | None:
    """The lookup code of a stored field report (for the source to hand to the citizen)."""
    cur = await conn.execute(
        "SELECT id, lookup_secret FROM field_reports WHERE source = %s AND external_id = %s",
        (source, external_id),
    )
    row = await cur.fetchone()
    if row is None or row[1] is None:  # stored before codes were handed out
        return None
    return report_code(int(row[0]), str(row[1]))


async def look_up(
    conn: Conn,
    code: str,
    hidden_categories: Collection[str] = (),
    hidden_procedures: Collection[str] = (),
) -> Status:
    """The public status of the report or dossier with this code; NotFound, always worded the
    same, when there is none or the citizen may not see it."""
    given = code.strip()
    report = REPORT_CODE.fullmatch(given.upper())
    if report is not None:
        found = await _report(conn, int(report.group(1)), report.group(2), hidden_categories)
    elif 0 < len(given) <= MAX_CODE:
        found = await _dossier(conn, given, hidden_procedures)
    else:
        found = None
    if found is None:
        raise NotFound(NOT_FOUND)
    return found


async def _report(
    conn: Conn, report_id: int, secret: str, hidden: Collection[str]
) -> Status | None:
    cur = await conn.execute(
        """SELECT f.lookup_secret, f.category, t.id, t.category, c.name_vi, t.state,
                  a.name_vi, t.opened_at, t.deadline_at, coalesce(t.resolved_at, t.closed_at),
                  t.sla_result
           FROM field_reports f
           JOIN tickets t ON t.id = f.ticket_id
           JOIN categories c ON c.code = t.category
           LEFT JOIN agencies a ON a.code = t.agency
           WHERE f.id = %s""",
        (report_id,),
    )
    row = await cur.fetchone()
    # The secret is compared in constant time, and after the query either way.
    stored = str(row[0]) if row is not None and row[0] is not None else "-" * len(secret)
    matches = hmac.compare_digest(stored.encode(), secret.encode())
    if row is None or not matches or row[1] in hidden or row[3] in hidden:
        return None
    _, _, ticket, _, subject, state, agency, opened, deadline, finished, result = row
    cur = await conn.execute(
        """SELECT e.at, e.to_state, e.from_state, e.from_agency, e.to_agency, a.name_vi
           FROM ticket_events e LEFT JOIN agencies a ON a.code = e.to_agency
           WHERE e.ticket_id = %s ORDER BY e.at, e.id""",
        (ticket,),
    )
    history: list[Step] = []
    for at, to_state, from_state, from_agency, to_agency, agency_name in await cur.fetchall():
        handed = from_state is None or from_agency != to_agency
        if to_state == from_state and not handed:
            continue  # a change the public does not see (a reassignment, a note)
        history.append(
            Step(
                at, to_state, TICKET_STATES.get(to_state, to_state), agency_name if handed else None
            )
        )
    return Status(
        "field_report",
        report_code(report_id, secret),
        str(subject),
        str(state),
        TICKET_STATES.get(state, state),
        agency,
        opened,
        deadline,
        finished,
        result,
        tuple(history),
    )


async def _dossier(conn: Conn, dossier_id: str, hidden: Collection[str]) -> Status | None:
    cur = await conn.execute(
        """SELECT d.procedure_code, d.state, coalesce(a.name_vi, d.agency), d.registered_at, d.accepted_at,
                  d.deadline_at, d.finished_at, d.result
           FROM dossiers d LEFT JOIN agencies a ON a.code = d.agency
           WHERE d.dossier_id = %s""",
        (dossier_id,),
    )
    row = await cur.fetchone()
    if row is None or row[0] in hidden:
        return None
    procedure, state, agency, registered, accepted, deadline, finished, result = row
    cur = await conn.execute(
        """SELECT at, event, NULL::timestamptz FROM dossier_events WHERE dossier_id = %s
           UNION ALL
           SELECT issued_at, 'apology', new_appointment_at FROM dossier_apologies
           WHERE dossier_id = %s
           ORDER BY 1""",
        (dossier_id, dossier_id),
    )
    history = [
        Step(at, event, NEW_APPOINTMENT if until else DOSSIER_STATES.get(event, event), None, until)
        for at, event, until in await cur.fetchall()
    ]
    return Status(
        "dossier",
        dossier_id,
        f"Thủ tục {procedure}",
        str(state),
        DOSSIER_STATES.get(state, state),
        agency,
        registered or accepted,
        deadline,
        finished,
        result,
        tuple(history),
    )
