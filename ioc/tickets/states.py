"""Tickets: what a field report becomes, and the moves a ticket may make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ioc.errors import Conflict, InvalidInput

STATES: Final = (
    "new",
    "assigned",
    "in_progress",
    "waiting",
    "resolved",
    "closed",
    "reopened",
    "rejected",
)
OPEN_STATES: Final = frozenset({"new", "assigned", "in_progress", "waiting", "reopened"})
_WORKING = frozenset({"new", "assigned", "in_progress", "waiting", "reopened"})


@dataclass(frozen=True)
class Move:
    """An action: the states it may start from, the state it leads to, what it needs."""

    sources: frozenset[str]
    target: str
    needs_reason: bool = False
    needs_assignee: bool = False
    needs_agency: bool = False


# "transfer" hands the ticket to another agency, where it starts again as new.
MOVES: Final[dict[str, Move]] = {
    "assign": Move(_WORKING, "assigned", needs_assignee=True),
    "start": Move(frozenset({"new", "assigned", "reopened"}), "in_progress"),
    "wait": Move(frozenset({"in_progress"}), "waiting", needs_reason=True),
    "resume": Move(frozenset({"waiting"}), "in_progress"),
    "resolve": Move(frozenset({"assigned", "in_progress", "waiting", "reopened"}), "resolved"),
    "close": Move(frozenset({"resolved"}), "closed"),
    "reopen": Move(frozenset({"resolved", "closed"}), "reopened", needs_reason=True),
    "transfer": Move(_WORKING, "new", needs_reason=True, needs_agency=True),
    "reject": Move(
        frozenset({"new", "assigned", "in_progress", "reopened"}), "rejected", needs_reason=True
    ),
}


@dataclass(frozen=True)
class Action:
    name: str
    reason: str = ""
    assignee: str | None = None
    to_agency: str | None = None


def check_move(ticket_id: int, state: str, action: Action) -> str:
    """The state after ``action``; raises InvalidInput or Conflict (an illegal transition)."""
    move = MOVES.get(action.name)
    if move is None:
        raise InvalidInput(
            f"unknown action {action.name!r}; accepted: {', '.join(MOVES)}",
            [{"field": "action", "reason": "unknown action"}],
        )
    if move.needs_reason and not action.reason.strip():
        raise InvalidInput(
            f"{action.name} needs a reason", [{"field": "reason", "reason": "required"}]
        )
    if move.needs_assignee and not (action.assignee or "").strip():
        raise InvalidInput(
            "assign needs an assignee", [{"field": "assignee", "reason": "required"}]
        )
    if move.needs_agency and not action.to_agency:
        raise InvalidInput(
            "transfer needs to_agency", [{"field": "to_agency", "reason": "required"}]
        )
    if state not in move.sources:
        raise Conflict(
            f"ticket {ticket_id} is {state!r}; {action.name!r} applies only to: "
            + ", ".join(s for s in STATES if s in move.sources)
        )
    return move.target


# Operators' triage (``ioc.tickets.triage``): the states each move may start from. Every one
# needs a reason. spam and not_actionable end as "rejected"; a ticket merged into another also
# ends as "rejected" (its history says into which).
TRIAGE_MOVES: Final[dict[str, frozenset[str]]] = {
    "recategorise": frozenset({"new", "assigned", "in_progress"}),
    "move_pin": frozenset({"new", "assigned", "in_progress"}),
    "merge": frozenset({"new", "assigned", "in_progress", "waiting", "reopened"}),
    "split": OPEN_STATES,
    "spam": frozenset({"new", "assigned", "in_progress", "reopened"}),
    "not_actionable": frozenset({"new", "assigned", "in_progress", "reopened"}),
}


def check_triage(ticket_id: int, state: str, name: str) -> None:
    """Raise Conflict when the triage move ``name`` does not apply to a ticket in ``state``."""
    sources = TRIAGE_MOVES[name]
    if state not in sources:
        raise Conflict(
            f"ticket {ticket_id} is {state!r}; {name!r} applies only to: "
            + ", ".join(s for s in STATES if s in sources)
        )
