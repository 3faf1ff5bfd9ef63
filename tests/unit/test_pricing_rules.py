"""The pure pricing rules (workers.rules.pricing): every command, every rejection code, approval holds,
windows, margin alerts and event ids; and Hypothesis properties for window resolution and for sequences
of immediate SetPrice commands. Expected figures are worked out by hand or with exact fractions."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.price_commands import (
    ActivateScheduledPrice,
    ApprovePriceChange,
    CancelScheduledPrice,
    ExpireScheduledPrice,
    PriceCommand,
    RejectPriceChange,
    SetPrice,
)
from contracts.price_events import (
    MarginBelowFloor,
    MarginRecovered,
    PriceChangeApproved,
    PriceChanged,
    PriceChangePendingApproval,
    PriceChangeRejected,
    PriceChangeScheduled,
    ScheduledPriceActivated,
    ScheduledPriceCancelled,
    ScheduledPriceExpired,
)
from contracts.stock_events import CommandRejected
from workers.rules.pricing import (
    Applied,
    Change,
    MarginState,
    Outcome,
    PricePolicy,
    PriceState,
    Rejected,
    Terms,
    Window,
    WindowStatus,
    decide,
    effective_at,
    margin_state,
)

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SKU = "PRC-1"
E = TypeVar("E")

D = Decimal


def set_price(
    selling: str,
    cost: str | None = None,
    *,
    discount: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    actor: str = "alice",
    sku: str = SKU,
    currency: str = "EUR",
    expected_version: int | None = None,
    command_id: uuid.UUID | None = None,
    **fields: Any,
) -> SetPrice:
    return SetPrice(
        command_id=command_id or uuid.uuid4(),
        sku=sku,
        issued_at=NOW,
        actor=actor,
        source="tests",
        expected_version=expected_version,
        currency=currency,
        selling_price=D(selling),
        cost_price=D(cost) if cost is not None else None,
        discount_price=D(discount) if discount is not None else None,
        effective_from=start,
        effective_until=end,
        **fields,
    )


DecisionKind = (
    type[ApprovePriceChange]
    | type[RejectPriceChange]
    | type[CancelScheduledPrice]
    | type[ActivateScheduledPrice]
    | type[ExpireScheduledPrice]
)


def decision(
    kind: DecisionKind,
    change_id: uuid.UUID,
    *,
    actor: str = "bob",
    sku: str = SKU,
    comment: str | None = None,
    issued_at: datetime = NOW,
) -> PriceCommand:
    return kind(
        command_id=uuid.uuid4(),
        sku=sku,
        issued_at=issued_at,
        actor=actor,
        source="tests",
        change_id=change_id,
        comment=comment,
    )


def priced(selling: str, cost: str | None = None, discount: str | None = None, **fields: Any) -> PriceState:
    terms = Terms(D(selling), D(discount) if discount else None, D(cost) if cost else None)
    return PriceState(SKU, "EUR", base=terms, version=fields.pop("version", 1), **fields)


def window(
    selling: str,
    start: datetime,
    end: datetime | None,
    status: WindowStatus = "scheduled",
    cost: str | None = "5",
    **fields: Any,
) -> Window:
    return Window(
        fields.pop("change_id", uuid.uuid4()),
        Terms(D(selling), None, D(cost) if cost else None),
        start,
        end,
        status,
        fields.pop("requested_by", "alice"),
        **fields,
    )


def run(
    state: PriceState,
    command: PriceCommand,
    change: Change | None = None,
    *,
    now: datetime = NOW,
    item_exists: bool = True,
    policy: PricePolicy | None = None,
) -> Outcome:
    return decide(state, change, command, now, item_exists=item_exists, policy=policy)


def applied(outcome: Outcome) -> Applied:
    assert isinstance(outcome, Applied), outcome
    return outcome


def rejected(outcome: Outcome, code: str) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == code, outcome.reason
    assert isinstance(outcome.event, CommandRejected)
    assert outcome.event.code == code
    assert outcome.event.reason == outcome.reason
    return outcome


def types(outcome: Applied) -> list[str]:
    return [e.type for e in outcome.events]


def only(outcome: Applied, kind: type[E]) -> E:
    found = [e for e in outcome.events if isinstance(e, kind)]
    assert len(found) == 1, types(outcome)
    return found[0]


def held(state: PriceState, command: SetPrice, **kwargs: Any) -> tuple[Change, PriceChangePendingApproval]:
    """Run `command`, check it was held without touching the state, return the pending change."""
    outcome = applied(run(state, command, **kwargs))
    assert outcome.state == state
    assert types(outcome) == ["price_change_pending_approval"]
    assert outcome.change is not None
    assert outcome.change.status == "pending"
    assert outcome.change.change_id == command.command_id
    return outcome.change, only(outcome, PriceChangePendingApproval)


EMPTY = PriceState(SKU, "EUR")


# --- setting prices --------------------------------------------------------------------------------------


def test_first_price_is_rounded_to_the_currency_and_announced() -> None:
    command = set_price("12.905", "7.1", reason="launch", notes="n")
    outcome = applied(run(EMPTY, command))
    assert outcome.state.base == Terms(D("12.91"), None, D("7.10"))
    assert outcome.state.version == 1
    assert outcome.change is None
    assert types(outcome) == ["price_changed"]
    event = only(outcome, PriceChanged)
    assert (event.old_price, event.new_price, event.selling_price) == (None, D("12.91"), D("12.91"))
    assert (event.cost_price, event.margin_pct, event.markup_pct) == (D("7.10"), D("45.00"), D("81.83"))
    assert (event.change_type, event.requested_by, event.approved_by) == ("manual", "alice", None)
    assert (event.reason, event.notes, event.version, event.change_id) == (
        "launch",
        "n",
        1,
        command.command_id,
    )


def test_jpy_prices_round_to_whole_yen() -> None:
    outcome = applied(run(PriceState(SKU, "JPY"), set_price("1299.5", "800.4", currency="JPY")))
    assert outcome.state.base == Terms(D(1300), None, D(800))


def test_discount_is_the_effective_price() -> None:
    outcome = applied(run(priced("10", "5"), set_price("10", discount="9.50")))
    assert outcome.state.terms is not None
    assert outcome.state.terms.effective == D("9.50")
    event = only(outcome, PriceChanged)
    assert (event.old_price, event.new_price, event.selling_price, event.discount_price) == (
        D(10),
        D("9.50"),
        D("10.00"),
        D("9.50"),
    )
    assert event.margin_pct == D("47.37")  # (9.50 - 5) / 9.50, on the discounted price


def test_an_omitted_cost_keeps_the_current_cost() -> None:
    outcome = applied(run(priced("10", "5"), set_price("11")))
    assert outcome.state.base == Terms(D("11.00"), None, D("5"))
    assert only(outcome, PriceChanged).cost_price == D(5)


def test_bulk_change_type_is_kept() -> None:
    outcome = applied(run(priced("10", "5"), set_price("10.50", change_type="bulk")))
    assert only(outcome, PriceChanged).change_type == "bulk"


# --- rejections ------------------------------------------------------------------------------------------


def test_unknown_sku() -> None:
    outcome = rejected(run(EMPTY, set_price("10"), item_exists=False), "unknown_sku")
    assert SKU in outcome.reason


@pytest.mark.parametrize("make", [lambda: set_price("10.10"), lambda: set_price("10.10", expected_version=1)])
def test_expected_version_absent_or_equal_applies(make: Any) -> None:
    assert applied(run(priced("10", "5", version=1), make())).state.version == 2


def test_version_mismatch() -> None:
    outcome = rejected(
        run(priced("10", "5", version=1), set_price("10.10", expected_version=0)), "version_mismatch"
    )
    assert "expected version 0" in outcome.reason


def test_window_overlap_names_the_window_it_overlaps() -> None:
    existing = window("9", NOW + HOUR, NOW + 2 * HOUR)
    state = priced("10", "5", windows=(existing,))
    outcome = rejected(
        run(state, set_price("8.5", start=NOW + 1.5 * HOUR, end=NOW + 3 * HOUR)), "window_overlap"
    )
    assert str(existing.change_id) in outcome.reason
    assert existing.start.isoformat() in outcome.reason


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (NOW + 0.5 * HOUR, NOW + 1.5 * HOUR),  # overlaps the start
        (NOW + 1.2 * HOUR, NOW + 1.4 * HOUR),  # inside
        (NOW + 0.5 * HOUR, NOW + 3 * HOUR),  # around
        (NOW + 1.5 * HOUR, None),  # open end
        (None, NOW + 1.5 * HOUR),  # from now until inside it
    ],
)
def test_overlapping_windows_are_refused(start: datetime | None, end: datetime | None) -> None:
    state = priced("10", "5", windows=(window("9", NOW + HOUR, NOW + 2 * HOUR),))
    rejected(run(state, set_price("9.5", start=start, end=end)), "window_overlap")


@pytest.mark.parametrize(
    ("start", "end"),
    [(NOW + 2 * HOUR, NOW + 3 * HOUR), (NOW + 0.5 * HOUR, NOW + HOUR), (None, NOW + HOUR)],
)
def test_touching_windows_are_accepted(start: datetime | None, end: datetime | None) -> None:
    state = priced("10", "5", windows=(window("9", NOW + HOUR, NOW + 2 * HOUR),))
    outcome = applied(run(state, set_price("9.5", start=start, end=end)))
    assert len(outcome.state.windows) == 2


def test_an_open_ended_window_blocks_every_later_window() -> None:
    state = priced("10", "5", windows=(window("9", NOW + HOUR, None),))
    rejected(run(state, set_price("9.5", start=NOW + 100 * HOUR, end=NOW + 101 * HOUR)), "window_overlap")


def test_unknown_change() -> None:
    rejected(run(priced("10", "5"), decision(ApprovePriceChange, uuid.uuid4())), "unknown_change")
    rejected(run(priced("10", "5"), decision(RejectPriceChange, uuid.uuid4())), "unknown_change")


def test_a_change_of_another_currency_is_unknown_here() -> None:
    change, _ = held(
        PriceState(SKU, "USD", base=Terms(D(10), None, D(5)), version=1), set_price("20", currency="USD")
    )
    rejected(run(priced("10", "5"), decision(ApprovePriceChange, change.change_id), change), "unknown_change")


def test_change_closed() -> None:
    state = priced("10", "5")
    change, _ = held(state, set_price("20"))
    approved = applied(run(state, decision(ApprovePriceChange, change.change_id), change))
    assert approved.change is not None
    for kind in (ApprovePriceChange, RejectPriceChange):
        outcome = rejected(
            run(approved.state, decision(kind, change.change_id), approved.change), "change_closed"
        )
        assert "already approved" in outcome.reason
    rejected_change = applied(run(state, decision(RejectPriceChange, change.change_id), change)).change
    assert rejected_change is not None
    outcome = rejected(
        run(state, decision(ApprovePriceChange, change.change_id), rejected_change), "change_closed"
    )
    assert "already rejected" in outcome.reason


def test_cancelling_or_activating_a_closed_window_is_change_closed() -> None:
    state = priced("10", "5")
    rejected(run(state, decision(CancelScheduledPrice, uuid.uuid4())), "change_closed")
    rejected(run(state, decision(ActivateScheduledPrice, uuid.uuid4())), "change_closed")
    rejected(run(state, decision(ExpireScheduledPrice, uuid.uuid4())), "change_closed")
    active = window("9", NOW - HOUR, NOW + HOUR, "active")
    outcome = rejected(
        run(priced("10", "5", windows=(active,)), decision(ActivateScheduledPrice, active.change_id)),
        "change_closed",
    )
    assert "already active" in outcome.reason


def test_not_due() -> None:
    scheduled = window("9", NOW + HOUR, NOW + 2 * HOUR)
    state = priced("10", "5", windows=(scheduled,))
    rejected(run(state, decision(ActivateScheduledPrice, scheduled.change_id), now=NOW), "not_due")
    rejected(run(state, decision(ExpireScheduledPrice, scheduled.change_id), now=NOW + 3 * HOUR), "not_due")
    active = window("9", NOW - HOUR, NOW + HOUR, "active")
    state = priced("10", "5", windows=(active,))
    rejected(run(state, decision(ExpireScheduledPrice, active.change_id), now=NOW), "not_due")
    open_ended = window("9", NOW - HOUR, None, "active")
    state = priced("10", "5", windows=(open_ended,))
    rejected(
        run(state, decision(ExpireScheduledPrice, open_ended.change_id), now=NOW + 1000 * HOUR), "not_due"
    )


def test_invalid_state_for_a_window_that_has_already_ended() -> None:
    rejected(run(priced("10", "5"), set_price("9", end=NOW)), "invalid_state")
    rejected(run(priced("10", "5"), set_price("9", start=NOW - 2 * HOUR, end=NOW - HOUR)), "invalid_state")
    state = priced("10", "5")
    change, _ = held(state, set_price("5", start=NOW + HOUR, end=NOW + 2 * HOUR))
    outcome = rejected(
        run(state, decision(ApprovePriceChange, change.change_id), change, now=NOW + 2 * HOUR),
        "invalid_state",
    )
    assert "already ended" in outcome.reason


# --- approval holds --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "is_held"),
    [("12.00", False), ("12.01", True), ("8.00", False), ("7.99", True), ("30", True), ("0.01", True)],
)
def test_a_move_beyond_the_threshold_is_held(new: str, is_held: bool) -> None:
    state = priced("10", "1")
    command = set_price(new)
    if not is_held:
        assert applied(run(state, command)).state.base == Terms(D(new), None, D(1))
        return
    _, pending = held(state, command)
    assert (pending.old_price, pending.new_price) == (D(10), D(new))
    assert pending.change_pct == ((D(new) - 10) * 10).quantize(D("0.01"))
    assert pending.requested_by == "alice"
    assert "moves" in pending.why


@pytest.mark.parametrize(("cost", "is_held"), [("9.00", False), ("9.01", True), ("10", True), ("12", True)])
def test_a_margin_under_the_floor_is_held(cost: str, is_held: bool) -> None:
    state = priced("10", "5")
    command = set_price("10", cost)
    if not is_held:
        assert applied(run(state, command)).state.base == Terms(D("10.00"), None, D(cost))
        return
    change, pending = held(state, command)
    assert pending.margin_pct == (10 - D(cost)) * 10
    assert "margin" in pending.why
    assert "floor" in change.why


def test_the_move_is_measured_on_the_discounted_price() -> None:
    held(priced("10", "1"), set_price("10", discount="7.50"))  # -25% on the price in force
    _, pending = held(priced("10", "1", discount="8"), set_price("10.00"))
    assert (pending.old_price, pending.new_price) == (D(8), D(10))


def test_first_price_only_the_margin_rule_applies() -> None:
    assert applied(run(EMPTY, set_price("1000", "1"))).state.version == 1
    assert applied(run(EMPTY, set_price("1000"))).state.base == Terms(D("1000.00"), None, None)
    assert applied(run(EMPTY, set_price("0"))).state.base == Terms(D("0.00"), None, None)
    change, pending = held(EMPTY, set_price("10", "9.50"))
    assert (pending.old_price, pending.change_pct, pending.margin_pct) == (None, None, D("5.00"))
    assert "margin" in change.why


def test_a_change_from_a_zero_price_is_not_a_move() -> None:
    applied(run(priced("0", "1"), set_price("50")))  # change_pct from 0 is undefined


def test_the_policy_is_configurable() -> None:
    strict = PricePolicy(approval_threshold_pct=D(5), margin_floor_pct=D(30), margin_clear_pts=D(0))
    held(priced("10", "1"), set_price("10.60"), policy=strict)
    held(priced("10", "1"), set_price("10", "7.10"), policy=strict)
    applied(run(priced("10", "1"), set_price("10.50", "7"), policy=strict))


def test_a_held_window_is_held_before_it_is_scheduled() -> None:
    state = priced("10", "5")
    _, pending = held(state, set_price("5", start=NOW + HOUR, end=NOW + 2 * HOUR))
    assert pending.new_price == D(5)


# --- decisions -------------------------------------------------------------------------------------------


def test_the_requester_cannot_approve_their_own_change_but_may_reject_it() -> None:
    state = priced("10", "5")
    change, _ = held(state, set_price("20"))
    refused = rejected(
        run(state, decision(ApprovePriceChange, change.change_id, actor="alice"), change), "self_approval"
    )
    assert "alice" in refused.reason
    withdrawn = applied(run(state, decision(RejectPriceChange, change.change_id, actor="alice"), change))
    assert types(withdrawn) == ["price_change_rejected"]


def test_approve_applies_the_change_with_type_approval_and_the_approver() -> None:
    state = priced("10", "5")
    change, _ = held(state, set_price("20", reason="supplier", notes="big"))
    outcome = applied(run(state, decision(ApprovePriceChange, change.change_id, comment="fine"), change))
    assert types(outcome) == ["price_change_approved", "price_changed"]
    approved_event = only(outcome, PriceChangeApproved)
    assert (approved_event.approved_by, approved_event.comment) == ("bob", "fine")
    event = only(outcome, PriceChanged)
    assert (event.change_type, event.requested_by, event.approved_by) == ("approval", "alice", "bob")
    assert (event.old_price, event.new_price, event.change_id) == (D(10), D("20.00"), change.change_id)
    assert (event.reason, event.notes) == ("supplier", "big")
    assert outcome.state.base == Terms(D("20.00"), None, D(5))
    assert outcome.state.version == state.version + 1
    assert outcome.change == replace(change, status="approved", decided_by="bob", comment="fine")


def test_approving_a_future_window_schedules_it_with_the_approver() -> None:
    state = priced("10", "5")
    change, _ = held(state, set_price("5.50", start=NOW + HOUR, end=NOW + 2 * HOUR))
    outcome = applied(run(state, decision(ApprovePriceChange, change.change_id), change))
    assert types(outcome) == ["price_change_approved", "price_change_scheduled"]
    assert outcome.state.terms == state.terms
    (scheduled,) = outcome.state.windows
    assert (scheduled.status, scheduled.start, scheduled.end) == ("scheduled", NOW + HOUR, NOW + 2 * HOUR)
    assert (scheduled.requested_by, scheduled.approved_by) == ("alice", "bob")


def test_approving_a_window_whose_start_has_passed_makes_it_active_now() -> None:
    state = priced("10", "5")
    change, _ = held(state, set_price("5.50", start=NOW + HOUR, end=NOW + 3 * HOUR))
    later = NOW + 2 * HOUR
    outcome = applied(run(state, decision(ApprovePriceChange, change.change_id), change, now=later))
    (active,) = outcome.state.windows
    assert (active.status, active.start, active.approved_by) == ("active", later, "bob")
    assert only(outcome, PriceChanged).new_price == D("5.50")


def test_reject_leaves_the_price_and_records_the_decision() -> None:
    state = priced("10", "5")
    change, _ = held(state, set_price("20"))
    outcome = applied(run(state, decision(RejectPriceChange, change.change_id, comment="no"), change))
    assert types(outcome) == ["price_change_rejected"]
    event = only(outcome, PriceChangeRejected)
    assert (event.rejected_by, event.comment, event.change_id) == ("bob", "no", change.change_id)
    assert outcome.state == state
    assert outcome.change == replace(change, status="rejected", decided_by="bob", comment="no")


def test_cancel_a_scheduled_window() -> None:
    scheduled = window("9", NOW + HOUR, NOW + 2 * HOUR)
    state = priced("10", "5", windows=(scheduled,))
    outcome = applied(run(state, decision(CancelScheduledPrice, scheduled.change_id)))
    assert types(outcome) == ["scheduled_price_cancelled"]
    assert only(outcome, ScheduledPriceCancelled).change_id == scheduled.change_id
    assert outcome.state.windows == ()
    assert outcome.state.terms == state.terms
    assert outcome.state.version == state.version + 1
    assert outcome.closed_windows == (replace(scheduled, status="cancelled"),)


def test_cancel_an_active_window_returns_to_the_base_price() -> None:
    active = window("9", NOW - HOUR, NOW + HOUR, "active")
    state = priced("10", "5", windows=(active,))
    outcome = applied(run(state, decision(CancelScheduledPrice, active.change_id)))
    assert types(outcome) == ["scheduled_price_cancelled", "price_changed"]
    event = only(outcome, PriceChanged)
    assert (event.old_price, event.new_price, event.change_type) == (D(9), D(10), "scheduled")
    assert outcome.state.terms == state.base
    assert outcome.closed_windows == (replace(active, status="cancelled"),)


# --- windows ---------------------------------------------------------------------------------------------


def test_a_window_is_scheduled_then_activated_then_expired() -> None:
    state = priced("10", "5")
    request = set_price("9", start=NOW + HOUR, end=NOW + 2 * HOUR)
    scheduled = applied(run(state, request))
    assert types(scheduled) == ["price_change_scheduled"]
    announced = only(scheduled, PriceChangeScheduled)
    assert (announced.effective_from, announced.effective_until, announced.selling_price) == (
        NOW + HOUR,
        NOW + 2 * HOUR,
        D("9.00"),
    )
    assert scheduled.state.terms == state.terms
    assert scheduled.state.version == 2

    activated = applied(
        run(scheduled.state, decision(ActivateScheduledPrice, request.command_id), now=NOW + HOUR)
    )
    assert types(activated) == ["scheduled_price_activated", "price_changed"]
    assert only(activated, ScheduledPriceActivated).change_id == request.command_id
    event = only(activated, PriceChanged)
    assert (event.old_price, event.new_price, event.change_type, event.change_id) == (
        D(10),
        D("9.00"),
        "scheduled",
        request.command_id,
    )
    assert activated.state.active is not None
    assert activated.state.active.change_id == request.command_id
    assert activated.state.base == state.base

    expired = applied(
        run(activated.state, decision(ExpireScheduledPrice, request.command_id), now=NOW + 2 * HOUR)
    )
    assert types(expired) == ["scheduled_price_expired", "price_changed"]
    event = only(expired, PriceChanged)
    assert (event.old_price, event.new_price, event.change_type) == (D("9.00"), D(10), "scheduled")
    assert expired.state.windows == ()
    assert expired.state.terms == state.base
    assert [w.status for w in expired.closed_windows] == ["expired"]
    assert expired.state.version == 4


def test_activation_after_the_window_ended_expires_it_without_a_price_change() -> None:
    """The worker was down for the whole window: it never became effective."""
    scheduled = window("9", NOW + HOUR, NOW + 2 * HOUR)
    state = priced("10", "5", windows=(scheduled,))
    outcome = applied(run(state, decision(ActivateScheduledPrice, scheduled.change_id), now=NOW + 3 * HOUR))
    assert types(outcome) == ["scheduled_price_expired"]
    assert only(outcome, ScheduledPriceExpired).change_id == scheduled.change_id
    assert outcome.state.windows == ()
    assert outcome.state.terms == state.base
    assert outcome.closed_windows == (replace(scheduled, status="expired"),)


def test_activation_exactly_at_the_end_expires_it() -> None:
    scheduled = window("9", NOW + HOUR, NOW + 2 * HOUR)
    state = priced("10", "5", windows=(scheduled,))
    outcome = applied(run(state, decision(ActivateScheduledPrice, scheduled.change_id), now=NOW + 2 * HOUR))
    assert types(outcome) == ["scheduled_price_expired"]


def test_a_window_until_a_future_time_starts_now() -> None:
    outcome = applied(run(priced("10", "5"), set_price("9", end=NOW + HOUR)))
    assert types(outcome) == ["price_changed"]
    (active,) = outcome.state.windows
    assert (active.status, active.start, active.end) == ("active", NOW, NOW + HOUR)
    assert outcome.state.terms is not None
    assert outcome.state.terms.effective == D(9)


def test_a_window_keeps_its_own_cost() -> None:
    scheduled = window("9", NOW, NOW + HOUR, cost="8.5")
    state = priced("10", "5", windows=(scheduled,))
    outcome = applied(run(state, decision(ActivateScheduledPrice, scheduled.change_id)))
    assert only(outcome, PriceChanged).margin_pct == D("5.56")


# --- margin alerts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "margin", "expected"),
    [
        ("ok", None, "ok"),
        ("below", None, "below"),
        ("ok", "9.99", "below"),
        ("ok", "10.00", "ok"),
        ("below", "10.00", "below"),
        ("below", "11.99", "below"),
        ("below", "12.00", "ok"),
        ("below", "-50", "below"),
        ("ok", "11", "ok"),
    ],
)
def test_margin_state_has_a_clear_margin(current: MarginState, margin: str | None, expected: str) -> None:
    assert margin_state(current, D(margin) if margin else None, PricePolicy()) == expected


def test_margin_alerts_are_transitions_with_a_clear_margin() -> None:
    state = priced("100", "50")
    below_request = set_price("100", "95")
    change, _ = held(state, below_request)
    went_below = applied(run(state, decision(ApprovePriceChange, change.change_id), change))
    alert = only(went_below, MarginBelowFloor)
    assert (alert.margin_pct, alert.floor_pct, alert.currency) == (D("5.00"), D(10), "EUR")
    assert went_below.state.margin_state == "below"

    still_below = applied(run(went_below.state, set_price("100", "89")))  # 11%: above the floor, not clear
    assert types(still_below) == ["price_changed"]
    assert still_below.state.margin_state == "below"

    almost = applied(run(still_below.state, set_price("100", "88.01")))  # 11.99%
    assert types(almost) == ["price_changed"]

    recovered = applied(run(almost.state, set_price("100", "88")))  # 12%: floor + clear margin
    assert types(recovered) == ["price_changed", "margin_recovered"]
    event = only(recovered, MarginRecovered)
    assert (event.margin_pct, event.floor_pct) == (D("12.00"), D(10))
    assert recovered.state.margin_state == "ok"

    dips = applied(run(recovered.state, set_price("100", "90")))  # 10%: ok, no alert
    assert types(dips) == ["price_changed"]

    again, _ = held(dips.state, set_price("100", "92"))
    below_again = applied(run(dips.state, decision(ApprovePriceChange, again.change_id), again))
    assert types(below_again) == ["price_change_approved", "price_changed", "margin_below_floor"]
    deeper, _ = held(below_again.state, set_price("100", "97"))
    deeper_still = applied(run(below_again.state, decision(ApprovePriceChange, deeper.change_id), deeper))
    assert types(deeper_still) == ["price_change_approved", "price_changed"]  # no second alert


def test_a_window_can_raise_and_its_expiry_clear_the_margin_alert() -> None:
    scheduled = window("9.50", NOW, NOW + HOUR, cost="9")  # margin 5.26% while it runs
    state = priced("10", "5", windows=(scheduled,))
    on = applied(run(state, decision(ActivateScheduledPrice, scheduled.change_id)))
    assert types(on) == ["scheduled_price_activated", "price_changed", "margin_below_floor"]
    off = applied(run(on.state, decision(ExpireScheduledPrice, scheduled.change_id), now=NOW + HOUR))
    assert types(off) == ["scheduled_price_expired", "price_changed", "margin_recovered"]


def test_no_margin_alert_without_a_cost() -> None:
    outcome = applied(run(EMPTY, set_price("10")))
    assert outcome.state.margin_state == "ok"
    assert types(outcome) == ["price_changed"]


# --- event ids -------------------------------------------------------------------------------------------


def test_event_ids_are_deterministic() -> None:
    state = priced("100", "50")
    command = set_price("100", "95")
    change, _ = held(state, command)
    approve = decision(ApprovePriceChange, change.change_id)
    first = applied(run(state, approve, change))
    second = applied(run(state, approve, change))
    assert first.events == second.events
    assert [e.event_id for e in first.events] == [uuid.uuid5(approve.command_id, str(i)) for i in range(3)]
    assert all(e.command_id == approve.command_id and e.occurred_at == NOW for e in first.events)
    other = applied(run(state, decision(ApprovePriceChange, change.change_id), change))
    assert not {e.event_id for e in first.events} & {e.event_id for e in other.events}
    refused = set_price("10", expected_version=99)
    outcome = rejected(run(state, refused), "version_mismatch")
    assert outcome.event == rejected(run(state, refused), "version_mismatch").event
    assert outcome.event.event_id == uuid.uuid5(refused.command_id, "0")
    assert outcome.event.command_type == "set_price"


# --- regressions: bugs found while writing these tests (fixed in f6105e8) -------------------------------


@pytest.mark.parametrize(
    ("kind", "code"),
    [(ApprovePriceChange, "unknown_change"), (RejectPriceChange, "unknown_change")],
)
def test_a_decision_under_another_sku_is_refused(kind: DecisionKind, code: str) -> None:
    """Was: approving SKU A's change with a command for SKU B applied it, with events under SKU B."""
    state = priced("10", "5")
    change, _ = held(state, set_price("20"))
    rejected(run(state, decision(kind, change.change_id, sku="OTHER-1"), change), code)


@pytest.mark.parametrize("kind", [CancelScheduledPrice, ActivateScheduledPrice, ExpireScheduledPrice])
def test_a_window_command_under_another_sku_is_refused(kind: DecisionKind) -> None:
    active = window("9", NOW - 2 * HOUR, NOW - HOUR, "active")
    scheduled = window("9", NOW - HOUR, NOW + HOUR, "scheduled")
    state = priced("10", "5", windows=(active, scheduled))
    target = scheduled if kind is ActivateScheduledPrice else active
    assert isinstance(run(state, decision(kind, target.change_id)), Applied)  # due, under its own SKU
    rejected(run(state, decision(kind, target.change_id, sku="OTHER-1")), "change_closed")


def test_a_base_change_under_an_active_window_is_measured_against_the_base() -> None:
    """Was: measured against the window's price: base 100 -> 55 (-45%) applied without approval while a
    window at 50 was in force, and 100 -> 101 was held as a 102% move."""
    promo = window("50", NOW - HOUR, NOW + HOUR, "active", cost="10")
    state = priced("100", "10", windows=(promo,))
    _, pending = held(state, set_price("55"))
    assert "-45.00%" in pending.why
    outcome = applied(run(state, set_price("101")))
    assert outcome.state.base == Terms(D("101.00"), None, D(10))
    assert outcome.state.terms == promo.terms  # the window stays in force


@pytest.mark.parametrize(
    ("base", "base_cost", "selling", "cost", "why"),
    [
        ("99.99", "1", "119.99", None, "moves"),  # +20.002%
        ("100", "1", "79.99", None, "moves"),  # -20.01%
        ("1000", "100", "1000", "900.04", "margin"),  # 9.996%
        ("2000", "100", "1999.99", "1800", "margin"),  # 9.99955%
    ],
)
def test_the_approval_rules_use_exact_percentages(
    base: str, base_cost: str, selling: str, cost: str | None, why: str
) -> None:
    """Was: the rules compared percentages rounded to 0.01, so 20.002% passed a 20% threshold."""
    _, pending = held(priced(base, base_cost), set_price(selling, cost))
    assert why in pending.why


def test_a_backdated_base_change_does_not_conflict_with_a_future_window() -> None:
    """Was: refused with window_overlap although a change without an end replaces the base."""
    future = window("95", NOW + 100 * HOUR, NOW + 101 * HOUR)
    state = priced("100", "10", windows=(future,))
    outcome = applied(run(state, set_price("99", start=NOW - timedelta(seconds=1))))
    assert outcome.state.base == Terms(D("99.00"), None, D(10))
    assert outcome.state.windows == (future,)


def test_activation_and_expiry_record_the_window_and_its_requester() -> None:
    """Was: the PriceChanged (so the history row) had no window and named the scheduler as requester."""
    scheduled = window("9", NOW, NOW + HOUR, approved_by="carol")
    state = priced("10", "5", windows=(scheduled,))
    on = applied(run(state, decision(ActivateScheduledPrice, scheduled.change_id)))
    off = applied(run(on.state, decision(ExpireScheduledPrice, scheduled.change_id), now=NOW + HOUR))
    for outcome in (on, off):
        event = only(outcome, PriceChanged)
        assert (event.effective_from, event.effective_until) == (scheduled.start, scheduled.end)
        assert (event.requested_by, event.approved_by) == ("alice", "carol")


def test_the_scheduler_clock_in_issued_at_makes_a_window_due() -> None:
    """The scheduler stamps issued_at with the database clock that found the window due, so a worker whose
    clock lags a little still activates it; without that stamp it is not due yet."""
    scheduled = window("9", NOW, NOW + HOUR)
    state = priced("10", "5", windows=(scheduled,))
    lagging = NOW - timedelta(milliseconds=200)
    stamped = decision(ActivateScheduledPrice, scheduled.change_id, issued_at=NOW)
    assert types(applied(run(state, stamped, now=lagging))) == ["scheduled_price_activated", "price_changed"]
    early = decision(ActivateScheduledPrice, scheduled.change_id, issued_at=lagging)
    rejected(run(state, early, now=lagging), "not_due")


# --- property: window resolution -------------------------------------------------------------------------

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


@st.composite
def window_sets(draw: st.DrawFn) -> tuple[Terms | None, tuple[Window, ...], list[int]]:
    """Non-overlapping open windows built from sorted boundaries (gaps may be 0: touching windows), the
    last one possibly open-ended, in random order; plus closed windows anywhere, which must not count."""
    count = draw(st.integers(0, 6))
    boundaries = sorted(draw(st.lists(st.integers(-500, 500), min_size=2 * count, max_size=2 * count)))
    lengths_positive = all(boundaries[2 * i] < boundaries[2 * i + 1] for i in range(count))
    if not lengths_positive:  # make each window at least 1 s long, keeping them ordered
        boundaries = [b + i for i, b in enumerate(boundaries)]
    open_end = count > 0 and draw(st.booleans())
    windows = []
    for i in range(count):
        end = None if open_end and i == count - 1 else at(boundaries[2 * i + 1])
        status: WindowStatus = draw(st.sampled_from(["scheduled", "active"]))
        terms = Terms(D(100 + i), None, None)
        windows.append(Window(uuid.UUID(int=i + 1), terms, at(boundaries[2 * i]), end, status, "alice"))
    for j in range(draw(st.integers(0, 3))):
        start = draw(st.integers(-600, 600))
        closed_status: WindowStatus = draw(st.sampled_from(["expired", "cancelled"]))
        closed = Window(
            uuid.UUID(int=1000 + j),
            Terms(D(900 + j), None, None),
            at(start),
            at(start + draw(st.integers(1, 600))),
            closed_status,
            "alice",
        )
        windows.insert(draw(st.integers(0, len(windows))), closed)
    shuffled = draw(st.permutations(windows))
    base = draw(st.sampled_from([None, Terms(D(1), None, None)]))
    return base, tuple(shuffled), boundaries


def brute_force(base: Terms | None, windows: tuple[Window, ...], t: datetime) -> Terms | None:
    containing = [
        w
        for w in windows
        if w.status in ("scheduled", "active") and w.start <= t and (w.end is None or t < w.end)
    ]
    assert len(containing) <= 1, "the generated windows overlap"
    return containing[0].terms if containing else base


@settings(max_examples=300)
@given(data=window_sets(), t=st.integers(-700, 700), on_boundary=st.booleans(), pick=st.integers(0, 100))
def test_effective_at_matches_brute_force(
    data: tuple[Terms | None, tuple[Window, ...], list[int]], t: int, on_boundary: bool, pick: int
) -> None:
    base, windows, boundaries = data
    seconds = boundaries[pick % len(boundaries)] + (pick % 3) - 1 if on_boundary and boundaries else t
    instant = at(seconds)
    assert effective_at(base, windows, instant) == brute_force(base, windows, instant)


# --- property: sequences of immediate SetPrice --------------------------------------------------------


def cents(value: Decimal) -> Decimal:
    return value.quantize(D("0.01"), rounding=ROUND_HALF_UP)


@st.composite
def price_commands(draw: st.DrawFn) -> SetPrice:
    selling = draw(st.decimals(min_value=0, max_value=200, places=draw(st.sampled_from([0, 2, 3, 4]))))
    cost = draw(st.none() | st.decimals(min_value=0, max_value=200, places=2))
    discount = None
    if draw(st.booleans()) and selling > 0:
        discount = (selling * draw(st.integers(50, 100)) / 100).quantize(D("0.0001"))
    return SetPrice(
        command_id=uuid.UUID(int=draw(st.integers(1, 2**64))),
        sku=SKU,
        issued_at=NOW,
        actor="alice",
        source="tests",
        currency="EUR",
        selling_price=selling,
        cost_price=cost,
        discount_price=discount,
    )


@settings(max_examples=200)
@given(commands=st.lists(price_commands(), min_size=1, max_size=30, unique_by=lambda c: c.command_id))
def test_the_price_in_force_is_the_last_applied_price(commands: list[SetPrice]) -> None:
    policy = PricePolicy()
    state = EMPTY
    last_applied: Decimal | None = None
    cost: Decimal | None = None
    for i, command in enumerate(commands):
        outcome = applied(run(state, command, now=NOW + timedelta(seconds=i), policy=policy))
        effective = cents(
            command.discount_price if command.discount_price is not None else command.selling_price
        )
        new_cost = cents(command.cost_price) if command.cost_price is not None else cost

        # Which rule holds it, with exact percentages against the price it replaces.
        move = (
            abs(Fraction(effective) - Fraction(last_applied)) / Fraction(last_applied) * 100
            if last_applied
            else None
        )
        margin = (
            (Fraction(effective) - Fraction(new_cost)) / Fraction(effective) * 100
            if new_cost is not None and effective > 0
            else None
        )
        must_hold = (move is not None and move > 20) or (margin is not None and margin < 10)

        was_held = "price_change_pending_approval" in types(outcome)
        assert was_held == must_hold, f"step {i}: held {was_held}, move {move}, margin {margin}"
        if was_held:
            assert outcome.state == state, f"step {i}: a held change changed the state"
            assert types(outcome) == ["price_change_pending_approval"]
        else:
            event = only(outcome, PriceChanged)
            assert (event.old_price, event.new_price) == (last_applied, effective)
            assert outcome.state.version == state.version + 1
            last_applied, cost = effective, new_cost
        state = outcome.state
        in_force = state.terms
        assert (in_force.effective if in_force else None) == last_applied
        assert (in_force.cost if in_force else None) == cost
