"""Sends due deliveries, records every attempt and schedules the next from the pure policy.

Several notifier processes may run: each claims due rows with SKIP LOCKED and a lease. NOTIFY from the
consumer wakes it; otherwise it sleeps until the next delivery falls due (at most the poll interval).
An SMTP server or receiver that is down only grows the pending backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import httpx
import orjson
import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from db import command_log, notify_repo
from db.notify_repo import Due, Outcome
from infra.settings import Settings
from infra.ssrf import Refused, parse_allowlist, resolve
from workers.notifier import policy, render, signing
from workers.notifier.senders import Sent, build_message, message_id, post_webhook, send_email

log = structlog.get_logger("invmon.notifier")

ATTEMPTS = Counter("invmon_notify_attempts_total", "Delivery attempts.", ["channel", "outcome"])
ATTEMPT_SECONDS = Histogram(
    "invmon_notify_attempt_seconds",
    "Duration of one delivery attempt.",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BACKLOG = Gauge("invmon_notify_backlog", "Deliveries pending (due now or scheduled for a retry).")
DISABLED = Counter("invmon_notify_endpoints_disabled_total", "Subscriptions the notifier disabled.")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _command_id(payload: str) -> str | None:
    """The command that caused the event, for the log lines (`invmon logs --command-id`)."""
    try:
        found = orjson.loads(payload).get("command_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return found if isinstance(found, str) else None


class Dispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        dsn: str,
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], datetime] = utcnow,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._engine = engine
        self._dsn = dsn
        self._settings = settings
        self._http = http
        self._clock = clock
        self._draw = draw
        self._allowlist = parse_allowlist(settings.webhook_allowlist)
        self._limit = min(settings.notify_batch_size, settings.notify_concurrency)
        # Longer than any one attempt can take, so a live dispatcher never loses its claim mid-send.
        self._lease_s = max(settings.webhook_timeout_s, settings.smtp_timeout_s) + 30.0
        self._wake = asyncio.Event()
        self._backlog_at = 0.0

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except Exception as error:  # PostgreSQL went away: claims lapse and are taken again
                log.warning("dispatcher_restart", error=repr(error))
                await asyncio.sleep(1.0)

    async def _session(self) -> None:
        listener = await asyncpg.connect(self._dsn)
        try:
            await listener.add_listener(notify_repo.DELIVERIES_CHANNEL, lambda *_: self._wake.set())
            while True:
                self._wake.clear()
                claimed = await self.round()
                if claimed < self._limit:
                    await self._wait()
        finally:
            await listener.close()

    async def round(self) -> int:
        async with self._engine.connect() as conn:
            pg = await command_log.driver(conn)
            due = await notify_repo.claim_due(pg, self._limit, self._lease_s)
            if time.monotonic() - self._backlog_at > 1.0:  # a busy dispatcher never idles in _wait
                BACKLOG.set(await notify_repo.backlog(pg))
                self._backlog_at = time.monotonic()
        if due:
            await asyncio.gather(*(self._deliver_or_log(d) for d in due))
        return len(due)

    async def _deliver_or_log(self, d: Due) -> None:
        try:
            await self._deliver(d)
        except asyncpg.ForeignKeyViolationError:
            log.info("delivery_deleted_while_sending", event_id=str(d.event_id), delivery_id=d.id)
        except Exception as error:  # the claim lapses after the lease and the delivery is tried again
            log.warning(
                "delivery_failed_unexpectedly", event_id=str(d.event_id), sku=d.sku, error=repr(error)
            )

    async def _wait(self) -> None:
        async with self._engine.connect() as conn:
            pg = await command_log.driver(conn)
            next_due = await notify_repo.seconds_to_next_due(pg)
            BACKLOG.set(await notify_repo.backlog(pg))
        timeout = self._settings.notify_poll_interval_s
        if next_due is not None:
            timeout = min(timeout, max(next_due, 0.0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _deliver(self, d: Due) -> None:
        log_ctx = {
            "event_id": str(d.event_id),
            "command_id": _command_id(d.payload),
            "sku": d.sku,
            "subscription_id": str(d.subscription_id),
        }
        if not d.enabled:
            async with self._engine.connect() as conn:
                await notify_repo.fail_disabled(await command_log.driver(conn), d.id)
            return
        # Send first, then take a connection to record: no database round trip before the attempt.
        now = self._clock()
        try:
            if d.kind == "webhook":
                sent, verdict = await self._webhook(d, now)
            else:
                sent, verdict = await self._email(d)
        except Exception as error:
            # The senders turn every transport failure into a result; what still raises comes from this
            # delivery's data (a URL that no longer parses, a header or body that cannot be encoded, a
            # renderer that cannot cope) and would raise again on every attempt. Left to the lease, the
            # delivery stayed pending with no attempt for ever.
            log.warning("delivery_cannot_be_sent", error=repr(error)[:500], **log_ctx)
            sent = Sent(None, 0.0, f"cannot be sent: {type(error).__name__}: {error}"[:500])
            verdict = policy.Verdict.FAILED
        ATTEMPTS.labels(d.kind, verdict.value).inc()
        ATTEMPT_SECONDS.labels(d.kind).observe(sent.latency_ms / 1000)
        nxt = policy.after_attempt(
            verdict,
            attempts_in_round=d.attempts_in_round + 1,
            now=now,
            schedule=self._settings.notify_retry_schedule_s,
            jitter=self._settings.notify_retry_jitter,
            draw=self._draw(),
            retry_after_s=policy.parse_retry_after(sent.retry_after, now),
        )
        reason = self._disable_reason(d, verdict, nxt, now)
        outcome = Outcome(
            d.id,
            d.subscription_id,
            now,
            sent.code,
            sent.latency_ms,
            sent.error,
            verdict.value,
            nxt.status,
            nxt.at,
            verdict is policy.Verdict.DELIVERED,
            reason,
        )
        async with self._engine.connect() as conn:
            await notify_repo.record(await command_log.driver(conn), outcome)
        log.info("delivery_attempt", outcome=verdict.value, code=sent.code, status=nxt.status, **log_ctx)
        if reason is not None:
            await self._tell_admin(d, reason)

    def _disable_reason(self, d: Due, verdict: policy.Verdict, nxt: policy.Next, now: datetime) -> str | None:
        if nxt.disable_endpoint:
            return "the receiver answered 410 Gone"
        failing_since = d.failing_since or now
        if verdict is not policy.Verdict.DELIVERED and policy.should_disable(
            failing_since, now, self._settings.webhook_disable_after_s
        ):
            return f"every delivery failed since {failing_since.isoformat()}"
        return None

    async def _webhook(self, d: Due, now: datetime) -> tuple[Sent, policy.Verdict]:
        try:
            target = await resolve(d.url or "", self._allowlist)
        except Refused as refused:
            # A name that does not resolve now may resolve later (a DNS outage, a record being moved): the
            # retry schedule, like a receiver that does not answer. The guard's verdicts are final.
            dns = isinstance(refused.__cause__, socket.gaierror)
            return Sent(None, 0.0, str(refused)), policy.Verdict.RETRY if dns else policy.Verdict.FAILED
        body = render.webhook_body(d.event_type, json.loads(d.payload))
        headers = signing.headers(d.secrets, str(d.event_id), int(now.timestamp()), body)
        sent = await post_webhook(self._http, target, headers, body)
        return sent, policy.classify_http(sent.code)

    async def _email(self, d: Due) -> tuple[Sent, policy.Verdict]:
        mail = render.email(
            d.event_type, json.loads(d.payload), item_name=d.item_name, public_url=self._settings.public_url
        )
        msg_id = message_id(str(d.event_id), str(d.subscription_id), self._settings)
        message = build_message(mail, d.recipients, msg_id, self._settings)
        sent = await send_email(message, self._settings)
        return sent, policy.classify_smtp(sent.code)

    async def _tell_admin(self, d: Due, reason: str) -> None:
        DISABLED.inc()
        log.warning("subscription_disabled", subscription_id=str(d.subscription_id), reason=reason)
        admin = self._settings.notify_admin_email
        if admin is None:
            return
        mail = render.Email(
            f"[inventory-monitor] notification endpoint disabled: {d.url or d.recipients}",
            f"Subscription {d.subscription_id} was disabled: {reason}.\n"
            f"Re-enable it with PATCH /v1/notifications/subscriptions/{d.subscription_id} "
            '{"enabled": true} and replay its failed deliveries.',
            f"<p>Subscription {d.subscription_id} was disabled: {reason}.</p>",
        )
        msg_id = message_id(f"disabled-{d.id}", str(d.subscription_id), self._settings)
        sent = await send_email(build_message(mail, [admin], msg_id, self._settings), self._settings)
        if sent.error:
            log.warning("admin_notice_failed", error=sent.error, subscription_id=str(d.subscription_id))
