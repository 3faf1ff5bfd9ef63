"""When to try a delivery again: pure functions of the attempt's outcome, the schedule and a random draw.

Modelled on Svix's schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) with ±20% jitter. The
caller passes the random draw, so every decision here is reproducible in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

DEFAULT_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # temporary: try again on the schedule
    FAILED = "failed"  # permanent: the receiver refused this delivery
    GONE = "gone"  # permanent for the endpoint: disable it


@dataclass(frozen=True, slots=True)
class Next:
    """What to do with a delivery after an attempt."""

    status: str  # pending | delivered | failed
    at: datetime | None  # when to try again (pending only)
    disable_endpoint: bool = False


def classify_http(status: int | None) -> Verdict:
    """None means no answer (connection refused, timeout). Redirects are not followed and count as a
    temporary failure: the receiver must give us the final URL."""
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.GONE
    if status in (408, 429) or status >= 500 or 300 <= status < 400:
        return Verdict.RETRY
    return Verdict.FAILED


def classify_smtp(code: int | None) -> Verdict:
    """RFC 5321: 4yz is a transient negative reply, 5yz permanent. None: the server could not be reached."""
    if code is None or 400 <= code < 500:
        return Verdict.RETRY
    if 200 <= code < 400:
        return Verdict.DELIVERED
    return Verdict.FAILED


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/garbled."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)


def delay_for(attempt: int, schedule: Sequence[float], jitter: float, draw: float) -> float | None:
    """Delay before attempt number `attempt` (1-based; attempt 1 uses schedule[0]). `draw` in [0, 1) picks
    the jitter: the delay is scaled by a factor in [1 - jitter, 1 + jitter). None: the schedule is over."""
    if attempt < 1 or attempt > len(schedule):
        return None
    return schedule[attempt - 1] * (1 - jitter + 2 * jitter * draw)


def after_attempt(
    verdict: Verdict,
    *,
    attempts_in_round: int,
    now: datetime,
    schedule: Sequence[float],
    jitter: float,
    draw: float,
    retry_after_s: float | None = None,
) -> Next:
    """The delivery's next state after its `attempts_in_round`-th attempt (counted since the last replay).

    Retry-After is honoured when it asks for more than the schedule, capped at the schedule's longest step
    so a receiver cannot park a delivery for ever.
    """
    if verdict is Verdict.DELIVERED:
        return Next("delivered", None)
    if verdict is Verdict.GONE:
        return Next("failed", None, disable_endpoint=True)
    if verdict is Verdict.FAILED:
        return Next("failed", None)
    delay = delay_for(attempts_in_round + 1, schedule, jitter, draw)
    if delay is None:
        return Next("failed", None)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max(schedule, default=0.0)))
    return Next("pending", now + timedelta(seconds=delay))


def should_disable(failing_since: datetime | None, now: datetime, disable_after_s: float) -> bool:
    """An endpoint whose deliveries have failed without a single success for this long is disabled."""
    return failing_since is not None and (now - failing_since).total_seconds() >= disable_after_s
