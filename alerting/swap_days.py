"""Annual swap days: the government's yearly notices that move working days around holidays."""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from pathlib import Path

__all__ = ["SwapDays"]

_NOTICE_KEYS = frozenset({"source", "about", "off", "worked"})


@dataclass(frozen=True)
class SwapDays:
    """Dates announced as days off, and dates (usually Saturdays) announced as worked."""

    off: frozenset[date] = frozenset()
    worked: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        clash = self.off & self.worked
        if clash:
            listed = ", ".join(d.isoformat() for d in sorted(clash))
            raise ValueError(f"dates listed both as off and as worked: {listed}")

    @classmethod
    def of(cls, off: Iterable[date | str] = (), worked: Iterable[date | str] = ()) -> SwapDays:
        """Build a table from dates or ISO strings ("2025-05-02")."""
        return cls(
            off=frozenset(_as_date(v, "off") for v in off),
            worked=frozenset(_as_date(v, "worked") for v in worked),
        )

    def overridden_by(self, other: SwapDays) -> SwapDays:
        """This table with `other` laid on top: where the two disagree, `other` wins."""
        # A later source must be able to undo an earlier one (a corrected notice,
        # a province that keeps an office open), so a date moves between the sets
        # instead of ending up in both.
        return SwapDays(
            off=(self.off - other.worked) | other.off,
            worked=(self.worked - other.off) | other.worked,
        )

    @classmethod
    def load(cls, path: str | Path) -> SwapDays:
        """Read a table from a .toml or .json file of `[[notice]]` entries."""
        path = Path(path)
        suffix = path.suffix.lower()
        try:
            if suffix == ".toml":
                with path.open("rb") as fh:
                    data = tomllib.load(fh)
            elif suffix == ".json":
                data = json.loads(path.read_text(encoding="utf-8"))
            else:
                raise ValueError(
                    f"{path}: swap-day file must end in .toml or .json, not {suffix or '(none)'!r}"
                )
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot parse swap-day file: {exc}") from exc
        return cls.parse(data, origin=str(path))

    @classmethod
    def parse(cls, data: object, *, origin: str = "<data>") -> SwapDays:
        """Validate an already-decoded document: {"notice": [{"off": [...], "worked": [...]}]}."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{origin}: expected a table with a 'notice' list")
        unknown = set(data) - {"notice"}
        if unknown:
            raise ValueError(f"{origin}: unknown top-level keys {sorted(unknown)}; only 'notice'")
        notices = data.get("notice", [])
        if not isinstance(notices, list):
            raise ValueError(f"{origin}: 'notice' must be a list of tables")
        table = cls()
        for number, notice in enumerate(notices, start=1):
            where = f"{origin}: notice {number}"
            if not isinstance(notice, Mapping):
                raise ValueError(f"{where}: expected a table, got {type(notice).__name__}")
            unknown = set(notice) - _NOTICE_KEYS
            if unknown:
                raise ValueError(
                    f"{where}: unknown keys {sorted(unknown)}; accepted: {sorted(_NOTICE_KEYS)}"
                )
            off = frozenset(_dates(notice.get("off", []), f"{where}: 'off'"))
            worked = frozenset(_dates(notice.get("worked", []), f"{where}: 'worked'"))
            try:
                entry = cls(off=off, worked=worked)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            # Notices in one file are read in order, so a later one may revise an earlier one.
            table = table.overridden_by(entry)
        return table

    @classmethod
    def builtin(cls) -> SwapDays:
        """The notices shipped with the platform (alerting/data/vn_swap_days.toml)."""
        return _builtin()


@functools.cache
def _builtin() -> SwapDays:
    text = resources.files("alerting").joinpath("data", "vn_swap_days.toml").read_text("utf-8")
    return SwapDays.parse(tomllib.loads(text), origin="alerting/data/vn_swap_days.toml")


def _dates(values: object, where: str) -> list[date]:
    if not isinstance(values, list):
        raise ValueError(f"{where} must be a list of dates, got {type(values).__name__}")
    return [_as_date(v, f"{where} item {i}") for i, v in enumerate(values, start=1)]


def _as_date(value: object, where: str) -> date:
    # TOML hands back real dates; JSON and callers hand back ISO strings.
    if isinstance(value, datetime):
        raise ValueError(f"{where} is {value.isoformat()!r}, a date-time; give a date (YYYY-MM-DD)")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{where} is {value!r}, must be a date (YYYY-MM-DD)")
