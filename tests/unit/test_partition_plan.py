"""The pure half of partition maintenance: which ranges to create, which partitions have expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db.partitions import (
    MONTH,
    Partition,
    Policy,
    expired,
    mis_spanned,
    next_boundary,
    parse_bound,
    to_create,
)
from invmon.retention import next_drop

NOW = datetime(2026, 12, 31, 22, 30, tzinfo=UTC)
HOURLY = Policy("outbox", "created_at", 3600, 6 * 3600, "published_at IS NULL")


def test_ranges_reach_three_spans_past_the_current_one_contiguously() -> None:
    ranges = to_create(HOURLY, [], NOW)
    assert [r.lower.hour for r in ranges] == [22, 23, 0, 1]
    assert ranges[-1].upper == datetime(2027, 1, 1, 2, tzinfo=UTC)
    # Existing ranges are continued from their end, not duplicated.
    have = [Partition("p", datetime(2026, 12, 31, 22, tzinfo=UTC), datetime(2027, 1, 1, 0, tzinfo=UTC))]
    assert [r.lower.hour for r in to_create(HOURLY, have, NOW)] == [0, 1]


def test_a_legacy_range_with_an_odd_upper_bound_is_continued_up_to_the_grid() -> None:
    legacy = [Partition("outbox_legacy", None, datetime(2026, 12, 31, 22, 10, 3, tzinfo=UTC))]
    first = to_create(HOURLY, legacy, NOW)[0]
    assert (first.lower.minute, first.upper) == (10, datetime(2026, 12, 31, 23, tzinfo=UTC))


def test_months_roll_over_the_year() -> None:
    assert next_boundary(NOW, MONTH) == datetime(2027, 1, 1, tzinfo=UTC)
    monthly = Policy("stock_ledger", "created_at", MONTH, None)
    assert [r.lower.month for r in to_create(monthly, [], NOW)] == [12, 1, 2, 3]


def test_only_partitions_wholly_past_retention_expire_and_never_default_or_kept_tables() -> None:
    old = Partition("a", NOW - timedelta(hours=8), NOW - timedelta(hours=7))
    edge = Partition("b", NOW - timedelta(hours=7), NOW - timedelta(hours=6))
    young = Partition("c", NOW - timedelta(hours=6), NOW - timedelta(hours=5))
    default = Partition("d", None, None, default=True)
    assert [p.name for p in expired(HOURLY, [young, edge, old, default], NOW)] == ["a", "b"]
    assert expired(Policy("stock_ledger", "created_at", MONTH, None), [old], NOW) == []


def test_bounds_are_read_from_postgresql_text() -> None:
    p = parse_bound("x", "FOR VALUES FROM ('2026-12-07 19:00:00+00') TO ('2026-12-07 20:00:00+00')")
    assert (p.lower, p.upper) == (
        datetime(2026, 12, 7, 19, tzinfo=UTC),
        datetime(2026, 12, 7, 20, tzinfo=UTC),
    )
    assert parse_bound("l", "FOR VALUES FROM (MINVALUE) TO ('2026-12-07 19:06:10.788414+00')").lower is None
    assert parse_bound("d", "DEFAULT").default


def test_the_next_drop_names_the_oldest_partition_and_its_time() -> None:
    p = Partition("outbox_p1", NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    assert next_drop(HOURLY, [p], NOW) == "outbox_p1 at 2027-01-01 03:30"
    assert "never" in next_drop(Policy("stock_ledger", "created_at", MONTH, None), [p], NOW)


def test_current_and_future_partitions_of_another_span_are_recreated_at_the_new_one() -> None:
    day = Partition("d", datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    past = Partition("p", datetime(2026, 12, 30, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
    after_legacy = Partition(
        "l", datetime(2026, 12, 31, 22, 10, 3, tzinfo=UTC), datetime(2026, 12, 31, 23, tzinfo=UTC)
    )
    assert [p.name for p in mis_spanned(HOURLY, [past, day, after_legacy], NOW)] == ["d"]
    minute = Policy("outbox", "created_at", 60, 120)
    ok = Partition(
        "m", datetime(2026, 12, 31, 22, 30, tzinfo=UTC), datetime(2026, 12, 31, 22, 31, tzinfo=UTC)
    )
    assert mis_spanned(minute, [ok], NOW) == []
    assert [p.name for p in mis_spanned(HOURLY, [ok], NOW)] == ["m"]  # back to hours: off the grid
