"""The steady load of ``ioc bench failover``: field reports, one per request or in small batches.

Batch b (of ``per_request`` reports) is due at ``start + b × per_request / rate`` on the
monotonic clock, so a late wake-up never shifts the schedule. A pool of senders posts each
released batch round-robin over the servers and retries it until it is acknowledged: a single
report by a 200/201 answer, a batch (NDJSON, ``POST /v1/events/batch``) only when its 200 answer
says every line was stored or was a duplicate. Acknowledgements are kept per report, so loss is
counted per event. When a second's worth of batches already waits for a sender, the source holds
the next one back (it is never sent, so it is never owed) rather than queue without bound.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import msgspec

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
CATEGORIES = ("moi_truong", "giao_thong", "chieu_sang", "cap_thoat_nuoc", "trat_tu_do_thi")


def report(n: int, now: datetime) -> dict[str, Any]:
    """Field report n; on a grid 0.0006° × 0.0005° apart (over 50 m), so none joins another's
    ticket."""
    side = 400
    return {
        "kind": "field_report",
        "external_id": f"F-{n}",
        "category": CATEGORIES[n % len(CATEGORIES)],
        "description": "Phản ánh hiện trường (thử chuyển đổi dự phòng)",
        "lon": round(107.45 + (n % side) * 0.0006, 6),
        "lat": round(16.30 + (n // side) * 0.0005, 6),
        # Now: a report older than its deadline would raise no alert (a back-filled record).
        "occurred_at": now.isoformat(),
    }


def default_parallel(rate: float, per_request: int) -> int:
    """Senders enough for a quarter-second's requests in flight (8 to 96)."""
    return max(8, min(96, round(rate / per_request / 4)))


class Refused(RuntimeError):
    """The platform refused a report for good (a 4xx other than 429): the bench is wrong."""


class Poster:
    """Posts reports at ``rate`` per second, ``per_request`` to a request, until acknowledged."""

    def __init__(
        self,
        servers: list[str],
        key: str,
        rate: float,
        per_request: int = 10,
        parallel: int | None = None,
    ) -> None:
        self.servers = servers
        self.key = key
        self.rate = rate
        self.per_request = per_request
        self.parallel = parallel or default_parallel(rate, per_request)
        self.acked: dict[str, float] = {}  # external id → when its request was acknowledged
        self.released: list[tuple[float, int]] = []  # (when, reports) handed to the senders
        self.failures: list[float] = []  # failed attempts (a batch counts once per attempt)
        self.lag_s = 0.0  # the longest a released batch waited for a sender
        self.held_back = 0  # reports never sent: a second's worth already waited
        self.started = 0.0
        self.ended = 0.0  # the end of the schedule
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder()

    async def run(self, seconds: float) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        connector = aiohttp.TCPConnector(limit=self.parallel)
        # No total: a request waits as long as it must; a silent server counts as a failure.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
        queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
        per_second = self.rate / self.per_request
        backlog = max(per_second, self.parallel)
        async with aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout
        ) as session:
            senders = [
                asyncio.create_task(self._send(session, queue)) for _ in range(self.parallel)
            ]
            self.started = time.monotonic()
            self.ended = self.started + seconds
            first = batch = 0
            while (due := self.started + batch / per_second) < self.ended:
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                batch += 1
                if queue.qsize() >= backlog:
                    self.held_back += self.per_request
                    continue
                queue.put_nowait((first, due))
                self.released.append((time.monotonic(), self.per_request))
                first += self.per_request
            for _ in senders:
                queue.put_nowait(None)
            await asyncio.gather(*senders)

    async def _send(
        self, session: aiohttp.ClientSession, queue: asyncio.Queue[tuple[int, float] | None]
    ) -> None:
        while (item := await queue.get()) is not None:
            first, due = item
            self.lag_s = max(self.lag_s, time.monotonic() - due)
            now = datetime.now(ZONE)
            reports = [report(n, now) for n in range(first, first + self.per_request)]
            await self._post(session, first // self.per_request, reports)

    async def _post(
        self, session: aiohttp.ClientSession, batch: int, reports: list[dict[str, Any]]
    ) -> None:
        single = len(reports) == 1
        if single:
            path, kind = "/v1/events", "application/json"
            body = self._encoder.encode(reports[0])
        else:
            path, kind = "/v1/events/batch", "application/x-ndjson"
            body = b"\n".join(self._encoder.encode(r) for r in reports)
        attempt = 0
        while True:
            server = self.servers[(batch + attempt) % len(self.servers)]
            try:
                async with session.post(
                    server + path, data=body, headers={"Content-Type": kind}
                ) as answer:
                    text = await answer.read()
                    if self._acknowledged(answer.status, text, len(reports), single):
                        at = time.monotonic()
                        for r in reports:
                            self.acked[r["external_id"]] = at
                        return
                    if 400 <= answer.status < 500 and answer.status != 429:
                        raise Refused(f"reports refused: {answer.status} {text[:300]!r}")
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.failures.append(time.monotonic())
            attempt += 1
            await asyncio.sleep(0.25)

    def _acknowledged(self, status: int, text: bytes, lines: int, single: bool) -> bool:
        if single:
            return status in (200, 201)
        if status != 200:
            return False
        answer = self._decoder.decode(text)
        if answer.get("rejected"):
            raise Refused(f"lines refused: {text[:300]!r}")
        return bool(answer.get("accepted", 0) + answer.get("duplicates", 0) == lines)

    def offered(self, start: float, end: float) -> float:
        """Reports handed to the senders per second between ``start`` and ``end``."""
        return sum(n for t, n in self.released if start <= t < end) / max(end - start, 1e-9)

    def achieved(self, start: float, end: float) -> float:
        """Reports acknowledged per second between ``start`` and ``end``."""
        return sum(1 for t in self.acked.values() if start <= t < end) / max(end - start, 1e-9)
