"""The alert state machine on available stock: `classify` and `transition_event_type`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.stock_events import (
    AlertEvent,
    AlertState,
    BackInStock,
    LowStockDetected,
    OutOfStock,
    OverstockDetected,
    StockLevelNormal,
)
from workers.rules.alerts import AlertPolicy, classify, transition_event_type

TEN_PCT = AlertPolicy(clear_margin_pct=10)
STATES: tuple[AlertState, ...] = ("ok", "low", "out", "over")


@dataclass(frozen=True)
class Levels:
    min_level: int
    max_level: int | None
    trackable: bool
    policy: AlertPolicy


def run(levels: Levels, availables: Sequence[int], start: AlertState = "ok") -> list[AlertState]:
    """The alert state after each available quantity, starting from `start`."""
    states: list[AlertState] = []
    current = start
    for available in availables:
        current = classify(
            current,
            available,
            levels.min_level,
            levels.max_level,
            trackable=levels.trackable,
            policy=levels.policy,
        )
        states.append(current)
    return states


def events(start: AlertState, states: Sequence[AlertState]) -> list[type[AlertEvent]]:
    found: list[type[AlertEvent]] = []
    for previous, current in zip([start, *states], states, strict=False):
        event = transition_event_type(previous, current)
        if event is not None:
            found.append(event)
    return found


# --- AlertPolicy.margin ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pct", "level", "margin"),
    [(10, 0, 0), (10, 1, 1), (10, 5, 1), (10, 10, 1), (10, 11, 2), (10, 100, 10), (0, 100, 0), (25, 8, 2)],
)
def test_margin_is_the_percentage_of_the_level_rounded_up(pct: int, level: int, margin: int) -> None:
    assert AlertPolicy(clear_margin_pct=pct).margin(level) == margin


# --- classify --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "available", "min_level", "max_level", "expected"),
    [
        # ok -> low -> out
        ("ok", 10, 5, None, "ok"),
        ("ok", 6, 5, None, "ok"),
        ("ok", 5, 5, None, "low"),
        ("ok", 1, 5, None, "low"),
        ("ok", 0, 5, None, "out"),
        ("low", 0, 5, None, "out"),
        ("low", 4, 5, None, "low"),
        # out -> low while at or under min, or inside the margin (margin(5) = 1)
        ("out", 3, 5, None, "low"),
        ("out", 5, 5, None, "low"),
        ("out", 6, 5, None, "low"),
        ("out", 7, 5, None, "ok"),
        # low -> ok only past min + margin
        ("low", 5, 5, None, "low"),
        ("low", 6, 5, None, "low"),
        ("low", 7, 5, None, "ok"),
        ("low", 22, 20, None, "low"),
        ("low", 23, 20, None, "ok"),
        # over (margin(100) = 10): enter above max, leave only at or below max - margin
        ("ok", 100, 10, 100, "ok"),
        ("ok", 101, 10, 100, "over"),
        ("low", 101, 10, 100, "over"),
        ("over", 101, 10, 100, "over"),
        ("over", 100, 10, 100, "over"),
        ("over", 91, 10, 100, "over"),
        ("over", 90, 10, 100, "ok"),
        ("over", 10, 10, 100, "low"),
        ("over", 0, 10, 100, "out"),
        # max with no margin room still classifies the level itself
        ("ok", 6, 5, 5, "over"),
        ("ok", 5, 5, 5, "low"),
        # min level 0: only "out" at zero, never "low"
        ("ok", 0, 0, None, "out"),
        ("ok", 1, 0, None, "ok"),
        ("out", 1, 0, None, "ok"),
        ("low", 1, 0, None, "ok"),
        ("out", 1, 0, 0, "over"),
        ("over", 0, 0, 0, "out"),
    ],
)
def test_classify(
    current: AlertState, available: int, min_level: int, max_level: int | None, expected: AlertState
) -> None:
    got = classify(current, available, min_level, max_level, trackable=True, policy=TEN_PCT)
    assert got == expected


@pytest.mark.parametrize("current", STATES)
@pytest.mark.parametrize("available", [0, 1, 5, 6, 100, 10_000])
def test_untracked_items_are_always_ok(current: AlertState, available: int) -> None:
    assert classify(current, available, 5, 100, trackable=False, policy=TEN_PCT) == "ok"


def test_a_zero_margin_clears_low_right_above_min() -> None:
    assert classify("low", 6, 5, None, trackable=True, policy=AlertPolicy(clear_margin_pct=0)) == "ok"
    assert classify("over", 100, 5, 100, trackable=True, policy=AlertPolicy(clear_margin_pct=0)) == "ok"


# --- transition_event_type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        ("ok", "ok", None),
        ("ok", "low", LowStockDetected),
        ("ok", "out", OutOfStock),
        ("ok", "over", OverstockDetected),
        ("low", "ok", StockLevelNormal),
        ("low", "low", None),
        ("low", "out", OutOfStock),
        ("low", "over", OverstockDetected),
        ("out", "ok", BackInStock),
        ("out", "low", BackInStock),
        ("out", "out", None),
        ("out", "over", BackInStock),
        ("over", "ok", StockLevelNormal),
        ("over", "low", LowStockDetected),
        ("over", "out", OutOfStock),
        ("over", "over", None),
    ],
)
def test_transition_event_type(
    previous: AlertState, current: AlertState, expected: type[AlertEvent] | None
) -> None:
    assert transition_event_type(previous, current) is expected


# --- properties ------------------------------------------------------------------------------------

quantities = st.integers(min_value=0, max_value=300)


@st.composite
def any_levels(draw: st.DrawFn) -> Levels:
    min_level = draw(st.integers(min_value=0, max_value=100))
    # often close to min, where the low and over bands overlap
    max_level = draw(st.none() | st.integers(min_level, min_level + 3) | st.integers(min_level, 250))
    return Levels(
        min_level,
        max_level,
        trackable=draw(st.booleans()),
        policy=AlertPolicy(clear_margin_pct=draw(st.integers(min_value=0, max_value=50))),
    )


@st.composite
def histories(draw: st.DrawFn, max_size: int = 60) -> tuple[Levels, AlertState, list[int]]:
    """Levels, a start state and available quantities that often land on and around the thresholds
    and their clear margins."""
    levels = draw(any_levels())
    low, margin = levels.min_level, levels.policy.margin(levels.min_level)
    near = [st.integers(max(low - 2, 0), low + margin + 2)]
    if levels.max_level is not None:
        high, high_margin = levels.max_level, levels.policy.margin(levels.max_level)
        near.append(st.integers(max(high - high_margin - 2, 0), high + 2))
    availables = draw(st.lists(st.one_of(quantities, *near), max_size=max_size))
    return levels, draw(st.sampled_from(STATES)), availables


@given(history=histories(max_size=40))
def test_one_event_per_state_change_and_none_while_it_holds(
    history: tuple[Levels, AlertState, list[int]],
) -> None:
    levels, start, availables = history
    states = run(levels, availables, start)
    changes = sum(1 for a, b in zip([start, *states], states, strict=False) if a != b)
    assert len(events(start, states)) == changes


@given(levels=any_levels(), start=st.sampled_from(STATES), available=quantities)
def test_holding_a_level_is_stable(levels: Levels, start: AlertState, available: int) -> None:
    """Seeing the same available quantity again never changes the state (so never re-alerts)."""
    first, second = run(levels, [available, available], start)
    assert first == second


@given(levels=any_levels(), start=st.sampled_from(STATES), available=quantities)
def test_out_exactly_when_nothing_is_available(levels: Levels, start: AlertState, available: int) -> None:
    [state] = run(levels, [available], start)
    if levels.trackable:
        assert (state == "out") == (available == 0)
        assert state != "low" or 0 < available <= levels.min_level + levels.policy.margin(levels.min_level)
    else:
        assert state == "ok"


@given(history=histories(max_size=40))
def test_event_types_match_the_state_entered(history: tuple[Levels, AlertState, list[int]]) -> None:
    levels, start, availables = history
    states = run(levels, availables, start)
    for previous, current in zip([start, *states], states, strict=False):
        event = transition_event_type(previous, current)
        if event is OutOfStock:
            assert current == "out"
        elif event is BackInStock:
            assert previous == "out"
            assert current != "out"
        elif event is LowStockDetected:
            assert current == "low"
            assert previous in ("ok", "over")
        elif event is OverstockDetected:
            assert current == "over"
            assert previous in ("ok", "low")
        elif event is StockLevelNormal:
            assert current == "ok"
            assert previous in ("low", "over")
        else:
            assert previous == current


@given(history=histories(max_size=60))
def test_low_is_left_upwards_only_past_the_clear_margin(
    history: tuple[Levels, AlertState, list[int]],
) -> None:
    """Module contract: leaving `low`/`out` upwards (to ok or over) needs available > min + margin(min).
    Hence between two LowStockDetected events the level rose above min + margin(min) at some point,
    for every min/max/margin, including max == min."""
    levels, start, availables = history
    levels = replace(levels, trackable=True)
    low_clear = levels.min_level + levels.policy.margin(levels.min_level)
    previous = start
    rose_past_margin = start in ("ok", "over")
    for available, current in zip(availables, run(levels, availables, start), strict=True):
        if previous in ("low", "out") and current in ("ok", "over"):
            assert available > low_clear
        if transition_event_type(previous, current) is LowStockDetected:
            assert rose_past_margin, f"second low alert without rising above {low_clear}"
            rose_past_margin = False
        rose_past_margin = rose_past_margin or available > low_clear
        previous = current


@given(history=histories(max_size=60))
def test_over_is_left_only_past_its_clear_margin_or_into_low(
    history: tuple[Levels, AlertState, list[int]],
) -> None:
    """Leaving `over` needs available <= max - margin(max), unless the level fell to min or below
    (then it is low or out whatever the over margin says: only possible when the bands overlap)."""
    levels, start, availables = history
    levels = replace(levels, trackable=True)
    previous = start
    for available, current in zip(availables, run(levels, availables, start), strict=True):
        if previous == "over" and current != "over":
            over_clear = (
                None
                if levels.max_level is None
                else levels.max_level - levels.policy.margin(levels.max_level)
            )
            assert (
                over_clear is None
                or available <= over_clear
                or (current in ("low", "out") and available <= levels.min_level)
            )
        previous = current


@st.composite
def oscillation(draw: st.DrawFn) -> tuple[Levels, list[int]]:
    """A level bouncing by +-1 around min (min - 1, min, min + 1, never 0) with margin(min) >= 1 unit,
    and any max the contract allows (unset or >= min, so max == min too)."""
    pct = draw(st.integers(min_value=1, max_value=50))
    min_level = draw(st.integers(min_value=2, max_value=200))
    max_level = draw(
        st.none() | st.integers(min_value=min_level, max_value=min_level + 3) | st.integers(min_level, 500)
    )
    levels = Levels(min_level, max_level, trackable=True, policy=AlertPolicy(clear_margin_pct=pct))
    bounce = draw(st.lists(st.sampled_from([min_level - 1, min_level, min_level + 1]), max_size=60))
    return levels, bounce


@given(case=oscillation(), start=st.sampled_from(["ok", "low"]))
def test_bouncing_around_min_raises_at_most_one_low_alert(
    case: tuple[Levels, list[int]], start: AlertState
) -> None:
    """A level bouncing min-1 / min / min+1 never climbs past min + margin(min) (>= min + 1), so it
    raises at most one LowStockDetected in all, and no other event except one OverstockDetected
    before it when max == min and the bounce starts at min + 1. Starting from low: no event at all."""
    levels, bounce = case
    assert levels.policy.margin(levels.min_level) >= 1
    found = events(start, run(levels, bounce, start))
    if start == "low":
        assert found == []
    elif levels.max_level == levels.min_level:
        assert found in ([], [LowStockDetected], [OverstockDetected], [OverstockDetected, LowStockDetected])
    else:
        assert found in ([], [LowStockDetected])


def test_bouncing_around_min_does_not_flap_when_max_equals_min() -> None:
    """Regression: min = max = 10, margin 10% (1 unit). After 20 (over) the level bounces 10, 11, 10, 11,
    10, 11. It used to flap Overstock, Low, Overstock, Low, ... (one event per step) because the raw
    'over' test ran before the low clear margin; now it stays low once low."""
    levels = Levels(10, 10, trackable=True, policy=TEN_PCT)
    states = run(levels, [20, 10, 11, 10, 11, 10, 11])
    assert states == ["over", "low", "low", "low", "low", "low", "low"]
    assert events("ok", states) == [OverstockDetected, LowStockDetected]
