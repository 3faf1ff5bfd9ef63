"""The retry policy: schedule with jitter, status classification, Retry-After, disabling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.notifier.policy import (
    DEFAULT_SCHEDULE_S,
    Verdict,
    after_attempt,
    classify_http,
    classify_smtp,
    delay_for,
    parse_retry_after,
    should_disable,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SVIX = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


def test_default_schedule_is_svixs() -> None:
    assert DEFAULT_SCHEDULE_S == SVIX


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.RETRY),
        (302, Verdict.RETRY),
        (307, Verdict.RETRY),
        (400, Verdict.FAILED),
        (401, Verdict.FAILED),
        (404, Verdict.FAILED),
        (408, Verdict.RETRY),
        (410, Verdict.GONE),
        (413, Verdict.FAILED),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (None, Verdict.RETRY),
    ],
)
def test_http_status_classification(status: int | None, verdict: Verdict) -> None:
    assert classify_http(status) is verdict


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (250, Verdict.DELIVERED),
        (421, Verdict.RETRY),
        (451, Verdict.RETRY),
        (450, Verdict.RETRY),
        (550, Verdict.FAILED),
        (554, Verdict.FAILED),
        (None, Verdict.RETRY),
    ],
)
def test_smtp_reply_classification(code: int | None, verdict: Verdict) -> None:
    assert classify_smtp(code) is verdict


@given(st.integers(1, len(SVIX)), st.floats(0, 1, exclude_max=True), st.floats(0, 0.9))
def test_delay_stays_within_jitter_of_the_schedule(attempt: int, draw: float, jitter: float) -> None:
    delay = delay_for(attempt, SVIX, jitter, draw)
    assert delay is not None
    base = SVIX[attempt - 1]
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_jitter_extremes_and_end_of_schedule() -> None:
    assert delay_for(2, SVIX, 0.2, 0.0) == pytest.approx(4.0)
    assert delay_for(2, SVIX, 0.2, 0.5) == pytest.approx(5.0)
    assert delay_for(2, SVIX, 0.2, 0.999999) == pytest.approx(6.0, rel=1e-5)
    assert delay_for(len(SVIX) + 1, SVIX, 0.2, 0.5) is None
    assert delay_for(0, SVIX, 0.2, 0.5) is None


def test_a_retry_is_scheduled_by_the_next_step_and_the_last_attempt_fails() -> None:
    after_first = after_attempt(
        Verdict.RETRY, attempts_in_round=1, now=NOW, schedule=SVIX, jitter=0.2, draw=0.5
    )
    assert after_first.status == "pending"
    assert after_first.at == NOW + timedelta(seconds=5)
    after_third = after_attempt(
        Verdict.RETRY, attempts_in_round=3, now=NOW, schedule=SVIX, jitter=0.2, draw=0.5
    )
    assert after_third.at == NOW + timedelta(seconds=1800)
    last = after_attempt(
        Verdict.RETRY, attempts_in_round=len(SVIX), now=NOW, schedule=SVIX, jitter=0.2, draw=0.5
    )
    assert last.status == "failed"
    assert last.at is None


@pytest.mark.parametrize(
    ("verdict", "status", "disable"),
    [
        (Verdict.DELIVERED, "delivered", False),
        (Verdict.FAILED, "failed", False),
        (Verdict.GONE, "failed", True),
    ],
)
def test_final_outcomes(verdict: Verdict, status: str, disable: bool) -> None:
    nxt = after_attempt(verdict, attempts_in_round=1, now=NOW, schedule=SVIX, jitter=0.2, draw=0.5)
    assert (nxt.status, nxt.at, nxt.disable_endpoint) == (status, None, disable)


def test_retry_after_is_honoured_when_longer_and_capped_by_the_longest_step() -> None:
    longer = after_attempt(
        Verdict.RETRY, attempts_in_round=1, now=NOW, schedule=SVIX, jitter=0.0, draw=0.0, retry_after_s=120
    )
    assert longer.at == NOW + timedelta(seconds=120)
    shorter = after_attempt(
        Verdict.RETRY, attempts_in_round=1, now=NOW, schedule=SVIX, jitter=0.0, draw=0.0, retry_after_s=1
    )
    assert shorter.at == NOW + timedelta(seconds=5)
    huge = after_attempt(
        Verdict.RETRY, attempts_in_round=1, now=NOW, schedule=SVIX, jitter=0.0, draw=0.0, retry_after_s=1e9
    )
    assert huge.at == NOW + timedelta(seconds=36000)


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Fri, 27 Nov 2026 12:01:00 GMT", NOW) == 60
    assert parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", NOW) == 0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_disable_after_failing_long_enough() -> None:
    five_days = 5 * 86400
    assert not should_disable(None, NOW, five_days)
    assert not should_disable(NOW - timedelta(days=4, hours=23), NOW, five_days)
    assert should_disable(NOW - timedelta(days=5), NOW, five_days)
