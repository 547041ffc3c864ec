"""The failed-authentication throttle (also the public lookup's allowance): a budget per client
address, and the credentials already seen working (served even from a throttled address)."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from ioc.errors import RateLimited

if TYPE_CHECKING:  # the credential type is the caller's; only its fields are read here
    from ioc.api.security import Credential


class FailureLimiter:
    """A token bucket per client address, spent by failed authentications (or, for the public
    lookup, by every lookup): ``burst`` at once, refilled at ``per_minute``. An empty bucket is
    answered 429 before the database is asked."""

    def __init__(
        self,
        burst: int,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
        what: str = "failed authentications",
    ) -> None:
        self._burst = float(burst)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._what = what

    def _level(self, address: str, now: float) -> float:
        entry = self._buckets.get(address)
        if entry is None:
            return self._burst
        tokens, at = entry
        return min(self._burst, tokens + (now - at) * self._rate)

    def check(self, address: str) -> None:
        level = self._level(address, self._clock())
        if level < 1.0:
            wait = math.ceil((1.0 - level) / self._rate)
            raise RateLimited(f"too many {self._what} from {address}; try again in {wait} s", wait)

    def failed(self, address: str) -> None:
        now = self._clock()
        level = self._level(address, now)
        self._buckets.pop(address, None)  # re-inserted last: the dict stays oldest-first
        self._buckets[address] = (max(0.0, level - 1.0), now)
        if len(self._buckets) > self._max_clients:
            full = [a for a in self._buckets if self._level(a, now) >= self._burst]
            for gone in full or list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[gone]


class KnownGood:
    """Credentials this process has seen verified, as digests (never the secrets themselves),
    the most recent ``bound`` of them. One of these is still looked up while its address is
    throttled: the throttle spares the database the guesses, not the keys that work."""

    def __init__(self, bound: int = 10_000) -> None:
        self._bound = bound
        self._seen: dict[bytes, None] = {}

    @staticmethod
    def _digest(credential: Credential) -> bytes:
        text = f"{credential.kind}:{credential.value}".encode("utf-8", "surrogatepass")
        return hashlib.blake2b(text, digest_size=16).digest()

    def __contains__(self, credential: Credential) -> bool:
        return self._digest(credential) in self._seen

    def add(self, credential: Credential) -> None:
        digest = self._digest(credential)
        self._seen.pop(digest, None)  # re-inserted last: the dict stays oldest-first
        self._seen[digest] = None
        if len(self._seen) > self._bound:
            del self._seen[next(iter(self._seen))]

    def discard(self, credential: Credential) -> None:
        self._seen.pop(self._digest(credential), None)


def client_address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client is not None else "unknown"
