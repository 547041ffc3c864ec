"""Signed webhook delivery from the outbox to each agency's endpoint.

The request body is the message's JSON. Headers:

- ``X-IOC-Timestamp``: Unix seconds when it was signed;
- ``X-IOC-Signature``: ``v1=`` + hex HMAC-SHA256 with the agency's secret over
  ``"<timestamp>." + body`` (check it with :func:`verify_signature`, and refuse old timestamps
  so a captured request cannot be replayed later);
- ``Idempotency-Key``: the same on every attempt of one message; receivers deduplicate on it;
- ``X-IOC-Delivery``: the outbox id (``GET /v1/deliveries/{id}`` shows its log);
- ``X-IOC-Attempt``: 1 for the first attempt, 2 for the first retry, …

What an answer means:

- 2xx: delivered.
- 410 Gone: the endpoint says it is gone for good; the message is dead at once.
- anything else (3xx, other 4xx, 5xx), no answer, or no answer in time: tried again after
  ``min(webhook_backoff_max_s, webhook_backoff_s × 2^(attempt-1))`` plus up to 10 % jitter,
  or later if a 429/503 asks so with ``Retry-After``; dead after ``webhook_max_attempts``.
  Other 4xx are retried too: at an agency they are mostly a receiver being redeployed or a
  secret being rotated, fixed within hours, and an alert must not be dropped meanwhile.
  Redirects are not followed (the signed body goes only where the agency said).
- an agency with a URL but no secret: nothing is sent unsigned; the message is dead at once.

Deliveries in one tick run concurrently, each within ``webhook_timeout_s`` overall, and each
is recorded as soon as it ends: an endpoint that is down or hangs costs the others nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
from psycopg_pool import AsyncConnectionPool

from ioc import __version__
from ioc.alerts import outbox
from ioc.clock import Clock
from ioc.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_VERSION: Final = "v1"
USER_AGENT: Final = f"ioc-platform/{__version__}"
_GONE: Final = 410
_ASKS_TO_WAIT: Final = frozenset({429, 503})  # answers whose Retry-After is honoured
_SNIPPET: Final = 200  # characters of an error answer's body kept in the log


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-IOC-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    header: str,
    now: datetime | float,
    tolerance_s: float = 300,
) -> bool:
    """Whether ``header`` (an ``X-IOC-Signature`` value) signs ``body`` at ``timestamp`` with
    ``secret``, and the timestamp is within ``tolerance_s`` of ``now``.

    For receivers: pass the raw body bytes as received, the ``X-IOC-Timestamp`` header and
    the current time. Several comma-separated signatures are accepted (any one may match).
    """
    try:
        stamp = int(str(timestamp).strip())
    except ValueError:
        return False
    current = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(current - stamp) > tolerance_s:
        return False
    expected = sign(secret, stamp, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in header.split(","))


@dataclass(frozen=True)
class _Outcome:
    url: str
    status: int | None
    error: str | None
    verdict: outbox.Verdict
    wait_s: float = 0.0  # the least delay the endpoint asked for (Retry-After)


def shown_url(url: str) -> str:
    """The URL as the delivery log shows it: no password, no query (either may hold a token)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return url.split("?", 1)[0]
    if parsed.password:
        parsed = parsed.copy_with(username=parsed.username, password="***")
    if parsed.query:
        parsed = parsed.copy_with(query=b"redacted")
    return str(parsed)


def _retry_after(response: httpx.Response) -> float:
    text = response.headers.get("retry-after", "").strip()
    return float(text) if text.isdigit() else 0.0


class WebhookDispatcher:
    """Claims due outbox messages, sends them signed, records every attempt."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        clock: Clock,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        *,
        batch: int = 200,
        per_agency: int = 20,
        interval_s: float = 1.0,
        spread: Callable[[], float] = random.random,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._settings = settings
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=settings.webhook_timeout_s, follow_redirects=False
        )
        self._batch = batch
        self._per_agency = per_agency
        self._interval_s = interval_s
        self._spread = spread
        # Long enough for the slowest delivery (bounded by the timeout) and its recording.
        self.lease_s = settings.webhook_timeout_s + settings.pool_timeout_s + 60.0

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def run(self) -> None:
        """Deliver until cancelled. Database trouble is logged and waited out, never fatal."""
        failures = 0
        try:
            while True:
                try:
                    attempted = await self.tick()
                    if failures:
                        log.info("webhook dispatcher recovered after %d failed ticks", failures)
                    failures = 0
                except Exception as exc:
                    failures += 1
                    wait = min(60.0, self._interval_s * 2 ** min(failures, 6))
                    # The first failure in full; after that one line per tick, not a trace a second.
                    log.error(
                        "webhook dispatcher tick failed (%d in a row: %s); pending deliveries "
                        "stay in the outbox; next try in %.0f s",
                        failures,
                        _cause(exc),
                        wait,
                        exc_info=failures == 1,
                    )
                    await self._clock.sleep(wait)
                    continue
                # A full batch means more is due: go again at once.
                if attempted < self._batch:
                    await self._clock.sleep(self._interval_s)
                else:
                    await asyncio.sleep(0)
        finally:
            await self.aclose()

    async def tick(self) -> int:
        """Claim what is due and deliver it concurrently; the number of messages attempted."""
        now = self._clock.now()
        async with self._pool.connection() as conn:
            rows = await outbox.claim(conn, now, self.lease_s, self._batch, self._per_agency)
        for row in rows:
            if row.lease_expired:
                log.warning(
                    "webhook %d to %s: the previous attempt was never settled (its dispatcher "
                    "stopped or lost the database); sending it again as attempt %d",
                    row.id,
                    row.agency,
                    row.attempt,
                )
        if rows:
            await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _deliver(self, row: outbox.Claimed) -> None:
        started = time.perf_counter()
        at = self._clock.now()
        try:
            outcome = await self._send(row, at)
        except Exception as exc:  # a bug must cost one message one attempt, not the tick
            log.exception("webhook %d to %s: sending failed unexpectedly", row.id, row.agency)
            outcome = _Outcome(shown_url(row.url or ""), None, f"internal error: {exc!r}", "retry")
        duration_ms = (time.perf_counter() - started) * 1000.0
        verdict, retry_at = outcome.verdict, None
        if verdict == "retry":
            if row.attempt >= self._settings.webhook_max_attempts:
                verdict = "dead"
            else:
                delay = outbox.backoff(
                    row.attempt,
                    self._settings.webhook_backoff_s,
                    self._settings.webhook_backoff_max_s,
                    self._spread(),
                )
                delay = max(delay, min(outcome.wait_s, self._settings.webhook_backoff_max_s))
                retry_at = at + timedelta(seconds=delay)
        attempt = outbox.Attempt(at, outcome.url, outcome.status, outcome.error, duration_ms)
        try:
            async with self._pool.connection() as conn:
                current = await outbox.settle(conn, row, attempt, verdict, retry_at)
        except Exception:
            log.exception(
                "webhook %d to %s: could not record attempt %d (%s); it will be sent again "
                "when its lease ends",
                row.id,
                row.agency,
                row.attempt,
                outcome.error or f"HTTP {outcome.status}",
            )
            return
        self._report(row, attempt, verdict, retry_at, current, duration_ms)

    def _report(
        self,
        row: outbox.Claimed,
        attempt: outbox.Attempt,
        verdict: outbox.Verdict,
        retry_at: datetime | None,
        current: bool,
        duration_ms: float,
    ) -> None:
        what = f"webhook {row.id} ({row.kind}) to {row.agency}"
        result = attempt.error or f"HTTP {attempt.status}"
        if not current and verdict != "delivered":
            log.warning(
                "%s: attempt %d (%s) came too late; another took it over", what, row.attempt, result
            )
        elif verdict == "delivered":
            log.info(
                "%s delivered: HTTP %s in %.0f ms, attempt %d",
                what,
                attempt.status,
                duration_ms,
                row.attempt,
            )
        elif verdict == "retry":
            assert retry_at is not None
            log.warning(
                "%s: attempt %d/%d failed (%s) at %s; next try at %s",
                what,
                row.attempt,
                self._settings.webhook_max_attempts,
                result,
                attempt.url,
                retry_at.isoformat(timespec="seconds"),
            )
        else:
            log.error(
                "%s is dead after attempt %d: %s (url %s); fix the endpoint, then "
                "POST /v1/deliveries/%d/retry",
                what,
                row.attempt,
                result,
                attempt.url or "none",
                row.id,
            )

    async def _send(self, row: outbox.Claimed, at: datetime) -> _Outcome:
        if not row.url:
            return _Outcome(
                "",
                None,
                f"agency {row.agency!r} has no webhook_url any more; set one "
                "(ioc config load or PUT /v1/admin/config) and retry the delivery",
                "dead",
            )
        url = shown_url(row.url)
        if not row.secret:
            return _Outcome(
                url,
                None,
                f"refused to send unsigned: agency {row.agency!r} has a webhook_url but no "
                "webhook_secret; set one (at least 16 characters) and retry the delivery",
                "dead",
            )
        stamp = int(at.timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-IOC-Timestamp": str(stamp),
            "X-IOC-Signature": sign(row.secret, stamp, row.body),
            "Idempotency-Key": row.idempotency_key,
            "X-IOC-Delivery": str(row.id),
            "X-IOC-Attempt": str(row.attempt),
        }
        limit = self._settings.webhook_timeout_s
        try:
            async with asyncio.timeout(limit):
                async with self._client.stream(
                    "POST", row.url, content=row.body, headers=headers, timeout=limit
                ) as response:
                    snippet = await _snippet(response) if not response.is_success else ""
        except (TimeoutError, httpx.TimeoutException):
            return _Outcome(url, None, f"no answer within {limit:g} s", "retry")
        except httpx.InvalidURL as exc:
            return _Outcome(url, None, f"the webhook_url is not usable: {exc}", "dead")
        except httpx.ConnectError as exc:
            return _Outcome(url, None, f"could not connect: {_cause(exc)}", "retry")
        except httpx.HTTPError as exc:
            return _Outcome(url, None, _cause(exc), "retry")
        status = response.status_code
        if response.is_success:
            return _Outcome(url, status, None, "delivered")
        error = f"HTTP {status} {response.reason_phrase}".rstrip()
        if response.is_redirect:
            error += f" to {response.headers.get('location', '?')} (redirects are not followed; set the final URL)"
        if snippet:
            error += f": {snippet}"
        if status == _GONE:
            return _Outcome(url, status, error + " (the endpoint is gone; not retried)", "dead")
        wait = _retry_after(response) if status in _ASKS_TO_WAIT else 0.0
        return _Outcome(url, status, error, "retry", wait)


async def _snippet(response: httpx.Response) -> str:
    """The start of an error answer's body, for the log (never the whole of a large one)."""
    taken = b""
    async for chunk in response.aiter_bytes():
        taken += chunk
        if len(taken) >= _SNIPPET * 4:
            break
    text = taken.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:_SNIPPET]


def _cause(exc: BaseException) -> str:
    """The innermost reason, in one line: the errno beneath a wrapped connection error."""
    for _ in range(10):  # bounded: a chain is short, and must not be followed forever
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    text = " ".join(str(exc).split())[:_SNIPPET]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
