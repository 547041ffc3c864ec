"""Working-time calendar: Vietnamese holidays, swap days, office hours and paused SLA clocks."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerting.calendar import WorkingCalendar
from alerting.clockwork import CalendarHours, Clockwork, Pause
from alerting.swap_days import SwapDays

VN = ZoneInfo("Asia/Ho_Chi_Minh")
HOUR = 3600.0
DAY = 7.5 * HOUR  # default office hours: 07:30-11:30 and 13:30-17:00


def at(text: str) -> datetime:
    """A Hà Nội wall-clock time from 'YYYY-MM-DD HH:MM[:SS[.ffffff]]'."""
    return datetime.fromisoformat(text).replace(tzinfo=VN)


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar.for_vietnam()


# -- which days are worked ------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        pytest.param(date(2026, 2, 13), True, id="Fri before Tet 2026"),
        *[pytest.param(date(2026, 2, d), False, id=f"Tet 2026 {d} Feb") for d in range(16, 21)],
        pytest.param(date(2026, 2, 23), True, id="Mon after Tet 2026"),
        pytest.param(date(2025, 4, 26), True, id="Sat 26 Apr 2025 worked by swap"),
        pytest.param(date(2025, 4, 27), False, id="Sun 27 Apr 2025"),
        pytest.param(date(2025, 4, 30), False, id="30 Apr 2025"),
        pytest.param(date(2025, 5, 1), False, id="1 May 2025"),
        pytest.param(date(2025, 5, 2), False, id="Fri 2 May 2025 off by swap"),
        pytest.param(date(2025, 5, 5), True, id="Mon 5 May 2025"),
        pytest.param(date(2025, 8, 29), True, id="Fri 29 Aug 2025"),
        pytest.param(date(2025, 9, 1), False, id="1 Sep 2025 adjacent to National Day"),
        pytest.param(date(2025, 9, 2), False, id="National Day 2025"),
        pytest.param(date(2025, 9, 3), True, id="Wed 3 Sep 2025"),
        pytest.param(date(2024, 9, 3), False, id="3 Sep 2024 adjacent to National Day"),
        pytest.param(date(2024, 4, 29), False, id="Mon 29 Apr 2024 off by swap"),
        pytest.param(date(2024, 5, 4), True, id="Sat 4 May 2024 worked by swap"),
        pytest.param(date(2025, 1, 1), False, id="New Year 2025"),
        pytest.param(date(2025, 1, 27), False, id="Tet 2025 first day"),
        pytest.param(date(2025, 2, 3), True, id="Mon after Tet 2025"),
        pytest.param(date(2025, 4, 7), False, id="Hung Kings 2025"),
        pytest.param(date(2026, 4, 27), False, id="Hung Kings 2026 falls on Sun, off Mon"),
        pytest.param(date(2026, 1, 2), False, id="Fri 2 Jan 2026 off by swap"),
        pytest.param(date(2026, 1, 10), True, id="Sat 10 Jan 2026 worked by swap"),
        pytest.param(date(2026, 8, 22), True, id="Sat 22 Aug 2026 worked by swap"),
        pytest.param(date(2026, 8, 31), False, id="Mon 31 Aug 2026 off by swap"),
        pytest.param(date(2025, 6, 7), False, id="ordinary Saturday"),
        pytest.param(date(2025, 6, 8), False, id="ordinary Sunday"),
        pytest.param(date(2025, 6, 9), True, id="ordinary Monday"),
    ],
)
def test_is_working_day(cal: WorkingCalendar, day: date, working: bool) -> None:
    assert cal.is_working_day(day) is working


def test_is_working_day_reads_an_aware_datetime_in_the_calendar_zone(cal: WorkingCalendar) -> None:
    # 18:00 UTC on Sunday 4 May 2025 is already Monday 01:00 in Hà Nội.
    assert cal.is_working_day(datetime(2025, 5, 4, 18, 0, tzinfo=UTC)) is True  # Mon 5 May local
    assert cal.is_working_day(datetime(2025, 5, 4, 16, 0, tzinfo=UTC)) is False  # Sun 4 May local


def test_working_days_in_2025(cal: WorkingCalendar) -> None:
    # 261 weekdays, less 12 weekday holidays (1/1, Tết 27-31/1, 7/4, 30/4, 1/5, 2/5, 1/9, 2/9),
    # plus the worked Saturday 26/4.
    assert cal.between(at("2025-01-01 00:00"), at("2026-01-01 00:00")) == 250 * DAY


# -- deadlines in working days -------------------------------------------------------


@pytest.mark.parametrize(
    ("accepted", "days", "due"),
    [
        pytest.param("2026-02-13 09:00", 1, "2026-02-23 17:00", id="over Tet 2026"),
        pytest.param("2025-04-29 10:00", 1, "2025-05-05 17:00", id="over 30/4-1/5 and swap 2025"),
        pytest.param("2025-04-25 10:00", 1, "2025-04-26 17:00", id="into the worked Saturday"),
        pytest.param("2025-08-29 10:00", 1, "2025-09-03 17:00", id="over National Day 2025"),
        pytest.param("2025-12-31 10:00", 2, "2026-01-06 17:00", id="over New Year 2026"),
        pytest.param("2025-06-09 10:00", 3, "2025-06-12 17:00", id="plain week"),
        pytest.param("2025-06-13 10:00", 1, "2025-06-16 17:00", id="over a weekend"),
        pytest.param(
            "2025-06-09 06:00", 1, "2025-06-10 17:00", id="before opening counts as that day"
        ),
        pytest.param("2025-06-09 12:00", 1, "2025-06-10 17:00", id="lunch counts as that day"),
        pytest.param("2025-06-09 17:00", 1, "2025-06-11 17:00", id="at closing counts as next day"),
        pytest.param("2025-06-09 18:00", 1, "2025-06-11 17:00", id="evening counts as next day"),
        pytest.param("2025-06-07 10:00", 1, "2025-06-10 17:00", id="Saturday counts as Monday"),
        pytest.param("2025-06-09 10:00", 0, "2025-06-09 17:00", id="zero days is the same day"),
        pytest.param("2025-06-07 10:00", 0, "2025-06-09 17:00", id="zero days from a weekend"),
        pytest.param("2025-01-02 10:00", 20, "2025-02-06 17:00", id="twenty days over Tet 2025"),
    ],
)
def test_add_working_days(cal: WorkingCalendar, accepted: str, days: int, due: str) -> None:
    assert cal.add_working_days(at(accepted), days) == at(due)


def test_add_working_days_with_an_intake_cutoff(cal: WorkingCalendar) -> None:
    accepted = at("2025-06-09 15:30")
    assert cal.add_working_days(accepted, 1) == at("2025-06-10 17:00")
    assert cal.add_working_days(accepted, 1, cutoff=time(15, 0)) == at("2025-06-11 17:00")


def test_results_are_in_the_calendar_zone(cal: WorkingCalendar) -> None:
    accepted = datetime(2026, 2, 13, 2, 0, tzinfo=UTC)  # 09:00 in Hà Nội
    due = cal.add_working_days(accepted, 1)
    assert due.tzinfo == VN
    assert due == at("2026-02-23 17:00")
    assert due.utcoffset() == timedelta(hours=7)


@pytest.mark.parametrize("days", [-1, 1.5, True])
def test_add_working_days_rejects_bad_counts(cal: WorkingCalendar, days: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="days"):
        cal.add_working_days(at("2025-06-09 10:00"), days)


# -- office hours -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "hours", "end"),
    [
        pytest.param("2025-06-09 09:00", 1, "2025-06-09 10:00", id="inside the morning"),
        pytest.param("2025-06-09 11:00", 1, "2025-06-09 14:00", id="over lunch"),
        pytest.param("2025-06-09 12:00", 0.5, "2025-06-09 14:00", id="starting in lunch"),
        pytest.param("2025-06-09 16:30", 1, "2025-06-10 08:00", id="over the evening"),
        pytest.param("2025-06-09 07:30", 7.5, "2025-06-09 17:00", id="a whole day ends at closing"),
        pytest.param("2025-06-09 07:30", 15, "2025-06-10 17:00", id="two whole days"),
        pytest.param("2025-06-09 07:30", 4, "2025-06-09 11:30", id="a whole morning ends at 11:30"),
        pytest.param("2025-06-13 16:00", 2, "2025-06-16 08:30", id="over a weekend"),
        pytest.param("2025-08-29 16:00", 2, "2025-09-03 08:30", id="over National Day 2025"),
        pytest.param("2025-04-25 16:00", 2, "2025-04-26 08:30", id="into the worked Saturday"),
        pytest.param("2025-12-31 16:00", 3, "2026-01-05 09:30", id="over New Year 2026"),
        pytest.param("2026-02-13 16:00", 7.5, "2026-02-23 16:00", id="over Tet 2026"),
        pytest.param("2025-06-07 10:00", 1, "2025-06-09 08:30", id="from a Saturday"),
        pytest.param("2025-06-09 10:00", 0, "2025-06-09 10:00", id="zero hours"),
    ],
)
def test_add_working_hours(cal: WorkingCalendar, start: str, hours: float, end: str) -> None:
    assert cal.add_working_hours(at(start), hours) == at(end)


@pytest.mark.parametrize(
    ("a", "b", "seconds"),
    [
        pytest.param("2025-06-09 11:00", "2025-06-09 14:00", HOUR, id="lunch is not counted"),
        pytest.param("2025-06-09 06:00", "2025-06-09 20:00", DAY, id="one whole day"),
        pytest.param("2025-06-13 16:00", "2025-06-16 08:30", 2 * HOUR, id="weekend is not counted"),
        pytest.param("2026-02-13 07:30", "2026-02-23 17:00", 2 * DAY, id="Tet is not counted"),
        pytest.param("2025-12-31 16:00", "2026-01-05 09:30", 3 * HOUR, id="over New Year"),
        pytest.param("2025-06-07 08:00", "2025-06-08 16:00", 0.0, id="inside a weekend"),
        pytest.param("2025-06-09 14:00", "2025-06-09 11:00", 0.0, id="backwards is zero"),
        pytest.param("2025-06-09 14:00", "2025-06-09 14:00", 0.0, id="empty span"),
    ],
)
def test_working_seconds_between(cal: WorkingCalendar, a: str, b: str, seconds: float) -> None:
    assert cal.working_seconds_between(at(a), at(b)) == seconds


def test_between_mixes_zones(cal: WorkingCalendar) -> None:
    assert cal.between(datetime(2025, 6, 9, 2, 0, tzinfo=UTC), at("2025-06-09 10:00")) == HOUR


def test_long_spans_add_up_year_by_year(cal: WorkingCalendar) -> None:
    edges = [at(f"{year}-01-01 00:00") for year in range(2000, 2041)]
    per_year = [cal.between(a, b) for a, b in pairwise(edges)]
    assert cal.between(edges[0], edges[-1]) == sum(per_year)
    assert all(240 * DAY < year < 256 * DAY for year in per_year)


ROUND_TRIP_STARTS = [
    "2026-02-13 10:15",
    "2025-04-26 07:00",
    "2025-06-08 12:00",
    "2025-12-31 16:59:59",
    "2025-06-09 11:29:59.500000",
    "2025-06-09 17:00",
]


@pytest.mark.parametrize("start", ROUND_TRIP_STARTS)
@pytest.mark.parametrize("hours", [0.25, 1, 3.75, 7.5, 40, 1000.123456])
def test_add_then_between_gives_the_same_amount(
    cal: WorkingCalendar, start: str, hours: float
) -> None:
    begin = at(start)
    assert cal.working_seconds_between(begin, cal.add_working_hours(begin, hours)) == pytest.approx(
        hours * HOUR, abs=1e-6
    )


@pytest.mark.parametrize("start", ROUND_TRIP_STARTS)
@pytest.mark.parametrize(
    "end", ["2026-03-02 09:45", "2026-03-02 16:00:00.250000", "2026-06-01 13:31"]
)
def test_between_then_add_lands_on_the_same_office_instant(
    cal: WorkingCalendar, start: str, end: str
) -> None:
    begin, finish = at(start), at(end)
    assert cal.add(begin, cal.between(begin, finish)) == finish


def test_add_returns_the_earliest_instant(cal: WorkingCalendar) -> None:
    # 11:30 and 13:30 are the same amount of office time from the morning; the clock
    # runs out at the first of them, not after lunch.
    start = at("2025-06-09 08:00")
    assert cal.add(start, cal.between(start, at("2025-06-09 13:30"))) == at("2025-06-09 11:30")


# -- pauses ------------------------------------------------------------------------

MON = "2025-06-09"


@pytest.mark.parametrize(
    ("pauses", "seconds"),
    [
        pytest.param([], 6 * HOUR, id="no pause"),
        pytest.param([("09:00", "10:00")], 5 * HOUR, id="one pause"),
        pytest.param(
            [("09:00", "10:00"), ("09:30", "10:30")], 4.5 * HOUR, id="overlaps count once"
        ),
        pytest.param([("11:00", "14:00")], 5 * HOUR, id="lunch inside a pause is not taken twice"),
        pytest.param([("10:00", None)], 2 * HOUR, id="still paused"),
        pytest.param([("06:00", "09:00")], 5 * HOUR, id="pause from before the start"),
        pytest.param([("15:00", "20:00")], 5 * HOUR, id="pause past the end"),
        pytest.param([("16:30", "18:00")], 6 * HOUR, id="pause after the end"),
    ],
)
def test_working_seconds_used(
    cal: WorkingCalendar, pauses: list[tuple[str, str | None]], seconds: float
) -> None:
    spans: list[Pause] = [(at(f"{MON} {a}"), at(f"{MON} {b}") if b else None) for a, b in pauses]
    # 08:00-16:00 holds 3.5 h of morning and 2.5 h of afternoon office time.
    assert cal.working_seconds_used(at(f"{MON} 08:00"), at(f"{MON} 16:00"), spans) == seconds


def test_pause_over_a_weekend(cal: WorkingCalendar) -> None:
    used = cal.used(
        at("2025-06-13 08:00"),
        at("2025-06-17 08:00"),
        [(at("2025-06-13 16:00"), at("2025-06-16 16:00"))],
    )
    assert used == 6 * HOUR + 1 * HOUR + 0.5 * HOUR


@pytest.mark.parametrize(
    ("pauses", "deadline"),
    [
        pytest.param([], "2025-06-09 10:00", id="no pause"),
        pytest.param([("09:00", "10:00")], "2025-06-09 11:00", id="pause shifts it"),
        pytest.param(
            [("09:00", "09:30"), ("09:15", "10:00")], "2025-06-09 11:00", id="overlaps once"
        ),
        pytest.param([("09:00", "16:30")], "2025-06-10 08:00", id="pushed past closing"),
        pytest.param([("10:00", "11:00")], "2025-06-09 10:00", id="pause at the deadline"),
        pytest.param([("11:00", "12:00")], "2025-06-09 10:00", id="pause after the deadline"),
        pytest.param([("07:00", "09:00")], "2025-06-09 11:00", id="pause from before the start"),
        pytest.param([("09:00", None)], None, id="still paused"),
        pytest.param([("10:30", None)], "2025-06-09 10:00", id="paused after time ran out"),
    ],
)
def test_deadline_with_pauses(
    cal: WorkingCalendar, pauses: list[tuple[str, str | None]], deadline: str | None
) -> None:
    spans: list[Pause] = [(at(f"{MON} {a}"), at(f"{MON} {b}") if b else None) for a, b in pauses]
    expected = at(deadline) if deadline else None
    assert cal.deadline_with_pauses(at(f"{MON} 08:00"), 2 * HOUR, spans) == expected


def test_dossier_waiting_for_the_citizen_moves_the_appointment(cal: WorkingCalendar) -> None:
    accepted = at("2026-02-13 09:00")
    due = cal.add_working_days(accepted, 1)
    budget = cal.between(accepted, due)
    # The citizen took one working day (Monday after Tết) to bring a missing paper.
    waiting: list[Pause] = [(at("2026-02-23 07:30"), at("2026-02-24 07:30"))]
    assert cal.deadline(accepted, budget, waiting) == at("2026-02-24 17:00")
    assert cal.used(accepted, at("2026-02-24 17:00"), waiting) == budget


@pytest.mark.parametrize(
    "pause",
    [
        pytest.param((at("2025-06-09 10:00"), at("2025-06-09 09:00")), id="ends before it starts"),
        pytest.param((at("2025-06-09 10:00"),), id="not a pair"),
    ],
)
def test_bad_pauses_are_rejected(cal: WorkingCalendar, pause: Any) -> None:
    with pytest.raises(ValueError, match="pause 1"):
        cal.used(at("2025-06-09 08:00"), at("2025-06-09 16:00"), [pause])


# -- both policies behind one protocol ------------------------------------------------


@pytest.fixture(params=["working", "calendar"])
def clock(request: pytest.FixtureRequest, cal: WorkingCalendar) -> Clockwork:
    return cal if request.param == "working" else CalendarHours()


@pytest.mark.parametrize("seconds", [0.0, 1800.0, 30 * HOUR, 1234.5])
def test_clockwork_round_trip(clock: Clockwork, seconds: float) -> None:
    start = at("2025-06-13 10:00")
    end = clock.add(start, seconds)
    assert clock.between(start, end) == pytest.approx(seconds, abs=1e-6)
    assert clock.used(start, end) == pytest.approx(seconds, abs=1e-6)
    assert clock.deadline(start, seconds) == end


def test_clockwork_pause_shifts_the_deadline(clock: Clockwork) -> None:
    start = at("2025-06-09 08:00")
    plain = clock.add(start, HOUR)
    paused = clock.deadline(start, HOUR, [(at("2025-06-09 08:15"), at("2025-06-09 08:45"))])
    assert paused == plain + timedelta(minutes=30)


def test_calendar_hours_count_nights_and_weekends() -> None:
    hours = CalendarHours()
    assert hours.add_hours(at("2025-06-13 16:00"), 24) == at("2025-06-14 16:00")
    assert hours.seconds_between(at("2025-06-13 16:00"), at("2025-06-16 16:00")) == 72 * HOUR
    assert (
        hours.seconds_used(
            at("2025-06-13 16:00"),
            at("2025-06-14 16:00"),
            [(at("2025-06-13 20:00"), at("2025-06-14 08:00"))],
        )
        == 12 * HOUR
    )
    assert hours.add(datetime(2025, 6, 13, 9, 0, tzinfo=UTC), 0).tzinfo == VN


# -- naive datetimes ---------------------------------------------------------------

NAIVE = datetime(2025, 6, 9, 10, 0)
AWARE = at("2025-06-09 10:00")
CAL = WorkingCalendar.for_vietnam()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: CAL.add_working_days(NAIVE, 1), id="add_working_days"),
        pytest.param(lambda: CAL.add_working_hours(NAIVE, 1), id="add_working_hours"),
        pytest.param(lambda: CAL.working_seconds_between(NAIVE, AWARE), id="between a"),
        pytest.param(lambda: CAL.working_seconds_between(AWARE, NAIVE), id="between b"),
        pytest.param(lambda: CAL.is_working_day(NAIVE), id="is_working_day"),
        pytest.param(
            lambda: CAL.used(AWARE, AWARE + timedelta(hours=1), [(NAIVE, None)]), id="pause start"
        ),
        pytest.param(lambda: CAL.deadline(AWARE, 60, [(AWARE, NAIVE)]), id="pause end"),
        pytest.param(lambda: CAL.deadline(NAIVE, 60), id="deadline start"),
        pytest.param(lambda: CalendarHours().add_hours(NAIVE, 1), id="calendar hours add"),
        pytest.param(lambda: CalendarHours().between(AWARE, NAIVE), id="calendar hours between"),
    ],
)
def test_naive_datetimes_are_rejected(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        call()


def test_negative_amounts_are_rejected(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="seconds is -1"):
        cal.add(AWARE, -1)
    with pytest.raises(ValueError, match="allowed_seconds"):
        cal.deadline(AWARE, float("nan"))


# -- configuration -------------------------------------------------------------------


def test_extra_days_from_the_constructor() -> None:
    cal = WorkingCalendar.for_vietnam(
        extra_off_days=[date(2025, 6, 10)], extra_worked_days=["2025-06-07"]
    )
    assert not cal.is_working_day(date(2025, 6, 10))
    assert cal.is_working_day(date(2025, 6, 7))
    assert cal.add_working_days(at("2025-06-06 10:00"), 2) == at("2025-06-09 17:00")


@pytest.mark.parametrize(
    "day",
    [
        pytest.param(date(2025, 5, 2), id="undo a built-in swap"),
        pytest.param(date(2025, 4, 7), id="open on a holiday from the holidays package"),
    ],
)
def test_configuration_wins_over_builtin_data(day: date) -> None:
    assert not WorkingCalendar.for_vietnam().is_working_day(day)
    assert WorkingCalendar.for_vietnam(extra_worked_days=[day]).is_working_day(day)


def test_builtin_table_holds_the_announced_swaps() -> None:
    # holidays 0.109 does not know the 2/1/2026 <-> 10/1/2026 swap (Công văn 12729/VPCP-KGVX).
    table = SwapDays.builtin()
    assert {date(2026, 1, 2), date(2025, 5, 2), date(2026, 8, 31)} <= table.off
    assert {date(2026, 1, 10), date(2025, 4, 26), date(2026, 8, 22)} <= table.worked


def test_without_builtin_swaps_only_the_package_applies() -> None:
    bare = WorkingCalendar.for_vietnam(builtin_swaps=False, extra_worked_days=["2026-01-10"])
    assert bare.swaps == SwapDays.of(worked=["2026-01-10"])
    assert bare.is_working_day(date(2026, 1, 10))


def _notices(off: list[str], worked: list[str]) -> dict[str, object]:
    return {"notice": [{"source": "test", "off": off, "worked": worked}]}


def test_swap_file_toml(tmp_path: Path) -> None:
    path = tmp_path / "swaps.toml"
    path.write_text(
        '[[notice]]\nsource = "UBND tỉnh"\noff = [2027-04-29]\nworked = [2027-05-08]\n',
        encoding="utf-8",
    )
    cal = WorkingCalendar.for_vietnam(swap_files=[path])
    assert not cal.is_working_day(date(2027, 4, 29))
    assert cal.is_working_day(date(2027, 5, 8))


def test_swap_files_apply_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(_notices(["2027-06-07"], [])), encoding="utf-8")
    second.write_text(json.dumps(_notices([], ["2027-06-07"])), encoding="utf-8")
    assert not WorkingCalendar.for_vietnam(swap_files=[first]).is_working_day(date(2027, 6, 7))
    assert WorkingCalendar.for_vietnam(swap_files=[first, second]).is_working_day(date(2027, 6, 7))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            {"notice": [{"off": ["2027-02-30"]}]},
            r"notice 1: 'off' item 1 is '2027-02-30'",
            id="bad date",
        ),
        pytest.param(
            {"notice": [{"work": ["2027-02-06"]}]}, r"unknown keys \['work'\]", id="typo key"
        ),
        pytest.param({"notices": []}, r"unknown top-level keys", id="typo top"),
        pytest.param(
            {"notice": [{"off": "2027-02-06"}]}, r"must be a list of dates", id="not a list"
        ),
        pytest.param(
            {"notice": [{"off": ["2027-02-06"], "worked": ["2027-02-06"]}]},
            r"both as off and as worked",
            id="clash",
        ),
    ],
)
def test_bad_swap_files_name_the_problem(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "swaps.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        SwapDays.load(path)


def test_bad_swap_file_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in \.toml or \.json"):
        SwapDays.load(tmp_path / "swaps.yaml")


def test_custom_office_hours() -> None:
    cal = WorkingCalendar.for_vietnam(office_hours=[("13:00", "17:00"), ("08:00", "12:00")])
    assert cal.seconds_per_day == 8 * HOUR
    assert cal.office_hours == ((time(8), time(12)), (time(13), time(17)))
    assert cal.add_working_hours(at("2025-06-09 08:00"), 8) == at("2025-06-09 17:00")
    assert cal.add_working_hours(at("2025-06-09 11:00"), 2) == at("2025-06-09 14:00")


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        pytest.param([("11:30", "07:30")], "start must be before end", id="reversed"),
        pytest.param([("07:30", "12:00"), ("11:00", "17:00")], "overlap", id="overlap"),
        pytest.param([], "office_hours is empty", id="empty"),
        pytest.param([("7h30", "11:30")], "must be a time", id="unparsable"),
    ],
)
def test_bad_office_hours(hours: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkingCalendar(office_hours=hours)


def test_bad_time_zone() -> None:
    with pytest.raises(ValueError, match="Asia/Hanoi_Typo"):
        WorkingCalendar(tz="Asia/Hanoi_Typo")


def test_calendar_is_immutable(cal: WorkingCalendar) -> None:
    with pytest.raises(AttributeError):
        cal.tz = UTC  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cal.holidays = {}  # type: ignore[attr-defined]


def test_default_is_shared() -> None:
    assert WorkingCalendar.default() is WorkingCalendar.default()
    assert WorkingCalendar.default().tz == VN
