"""The live hub's rounds: at each wake of a filter's queue its subscribers take everything
queued until then, so they share the frames built for it; with a frame interval, a busy
stream goes out at most once per interval while a notice after a quiet spell goes at once."""

from __future__ import annotations

import asyncio
import json

from ioc.live import LiveHub, everything


def _notice(seq: int) -> str:
    return json.dumps({"seq": seq, "ticket": seq, "agency": "ioc", "state": "new"})


def test_subscribers_of_a_filter_take_the_same_round_and_share_its_frames() -> None:
    async def scenario() -> tuple[list[list[str]], list[list[str]]]:
        hub = LiveHub("postgresql:///unused")  # publish only: never started
        one, two = hub.subscribe(everything), hub.subscribe(everything)  # one filter
        first, second = one.frames(), two.frames()
        for seq in (1, 2, 3):
            hub.publish(_notice(seq))
        a, b = await anext(first), await anext(second)
        hub.publish(_notice(4))
        c, d = await anext(first), await anext(second)
        return [a, c], [b, d]

    ones, twos = asyncio.run(scenario())
    assert [json.loads(f) for frames in ones for f in frames] == [
        [json.loads(_notice(s)) for s in (1, 2, 3)],
        [json.loads(_notice(4))],
    ]
    assert all(x is y for x, y in zip(ones, twos, strict=True))  # built once, for both


def test_a_frame_interval_holds_a_busy_stream_but_not_a_first_notice() -> None:
    async def scenario() -> list[list[int]]:
        hub = LiveHub("postgresql:///unused", pace_s=0.3)
        subscription = hub.subscribe(everything)
        batches = subscription.batches()
        hub.publish(_notice(1))  # after a quiet spell: goes at once
        got = [await asyncio.wait_for(anext(batches), 0.25)]
        for seq in (2, 3):  # within the interval: held, then sent together
            hub.publish(_notice(seq))
            await asyncio.sleep(0.01)
        got.append(await asyncio.wait_for(anext(batches), 5))
        return [[json.loads(t)["seq"] for t in texts] for texts in got]

    assert asyncio.run(scenario()) == [[1], [2, 3]]
