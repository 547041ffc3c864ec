"""The clocks' pause stops a retry loop whose cancellation a library turned into its own error."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest

from ioc.clock import Clock, ManualClock, SystemClock


async def retry_loop(clock: Clock, rounds: list[int], gone: asyncio.Event) -> None:
    """A background loop as the engines write them: a failed round is logged and retried
    (``gone`` only ends a loop the test has given up on)."""
    while not gone.is_set():
        try:
            try:
                await asyncio.sleep(10)  # a round's query, cancelled while it runs
            except asyncio.CancelledError:
                # What a rollback on a connection whose query was just cancelled may raise
                # instead of the cancellation.
                raise psycopg.OperationalError("the connection is in a bad state") from None
        except psycopg.Error:
            rounds.append(1)
        await clock.sleep(0.01)


@pytest.mark.parametrize("clock", [SystemClock(), ManualClock(datetime(2026, 1, 1, tzinfo=UTC))])
def test_a_cancel_taken_for_a_failed_round_still_stops_the_loop(clock: Clock) -> None:
    async def scenario() -> list[int]:
        rounds: list[int] = []
        gone = asyncio.Event()
        task = asyncio.create_task(retry_loop(clock, rounds, gone))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=5)
        finally:
            gone.set()
        assert task.cancelled(), "the loop went on after it was cancelled"
        return rounds

    assert asyncio.run(scenario()) == [1]  # the round that was cancelled, and no other


def test_a_task_not_asked_to_stop_sleeps_as_asked() -> None:
    async def scenario() -> datetime:
        clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
        await clock.sleep(30)
        return clock.now()

    assert asyncio.run(scenario()) == datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
