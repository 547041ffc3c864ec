"""A review table's shape (columns, units, rows) and the small helpers every table query shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from psycopg import sql

Unit = Literal["text", "date", "count", "rate", "hours", "days", "accuracy"]


By = Literal["agency", "category"]


UNROUTED: Final = "(chưa định tuyến)"


ALL: Final = "*"  # review_ticket_bins: every agency / every category


@dataclass(frozen=True)
class Column:
    """One column of a review table: its CSV key, its heading on the page, its unit."""

    key: str
    label: str
    unit: Unit


@dataclass(frozen=True)
class Table:
    """A finished table: rows are dicts keyed by the columns' keys."""

    name: str
    title: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "columns": [{"key": c.key, "label": c.label, "unit": c.unit} for c in self.columns],
            "rows": self.rows,
        }


def hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def rate(part: int, whole: int) -> float | None:
    return None if not whole else round(part / whole, 4)


def equal(column: str, param: str, prefix: str = "") -> sql.Composable:
    """`` AND column = %(param)s`` (values always go as parameters)."""
    return sql.SQL(" AND {}{} = {}").format(
        sql.SQL(prefix), sql.Identifier(column), sql.Placeholder(param)
    )


# What a ticket table shows for each row (agency, category or official).
TICKET_COLUMNS: Final = (
    Column("received", "Tiếp nhận", "count"),
    Column("responded", "Đã phản hồi", "count"),
    Column("response_median_h", "Phản hồi: trung vị (giờ HC)", "hours"),
    Column("response_p90_h", "Phản hồi: P90 (giờ HC)", "hours"),
    Column("resolved", "Đã xử lý", "count"),
    Column("resolution_median_h", "Xử lý: trung vị (giờ HC)", "hours"),
    Column("resolution_p90_h", "Xử lý: P90 (giờ HC)", "hours"),
    Column("early", "Trước hạn", "count"),
    Column("on_time", "Đúng hạn", "count"),
    Column("late", "Trễ hạn", "count"),
    Column("on_time_rate", "Tỷ lệ đúng hạn", "rate"),
    Column("overdue_now", "Đang quá hạn", "count"),
)

# Whether the row's median and P90 are exact or estimated.
PERCENTILES_COLUMN: Final = Column("percentiles", "Trung vị, P90", "accuracy")
