"""What a price command does to the prices of one SKU in one currency. Pure: time comes in as `now`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from contracts.money import change_pct, margin_pct, markup_pct, round_to_currency
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
    ChangeType,
    MarginBelowFloor,
    MarginRecovered,
    PriceChangeApproved,
    PriceChanged,
    PriceChangePendingApproval,
    PriceChangeRejected,
    PriceChangeScheduled,
    PriceEvent,
    ScheduledPriceActivated,
    ScheduledPriceCancelled,
    ScheduledPriceExpired,
)
from workers.rules.rejection import Reject, Rejected, rejected

CLOCK_SKEW = timedelta(seconds=5)
WindowStatus = Literal["scheduled", "active", "expired", "cancelled"]
ChangeStatus = Literal["pending", "approved", "rejected"]
MarginState = Literal["ok", "below"]


@dataclass(frozen=True, slots=True)
class Terms:
    selling: Decimal
    discount: Decimal | None
    cost: Decimal | None

    @property
    def effective(self) -> Decimal:
        return self.discount if self.discount is not None else self.selling


@dataclass(frozen=True, slots=True)
class Window:
    change_id: uuid.UUID
    terms: Terms
    start: datetime
    end: datetime | None
    status: WindowStatus
    requested_by: str
    approved_by: str | None = None

    def covers(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)

    def overlaps(self, start: datetime, end: datetime | None) -> bool:
        return (self.end is None or start < self.end) and (end is None or self.start < end)


@dataclass(frozen=True, slots=True)
class PriceState:
    """One SKU in one currency. `windows` holds the open ones (scheduled or active) only."""

    sku: str
    currency: str
    base: Terms | None = None
    windows: tuple[Window, ...] = ()
    margin_state: MarginState = "ok"
    version: int = 0

    @property
    def active(self) -> Window | None:
        return next((w for w in self.windows if w.status == "active"), None)

    @property
    def terms(self) -> Terms | None:
        active = self.active
        return active.terms if active else self.base


@dataclass(frozen=True, slots=True)
class Change:
    """A requested SetPrice held for approval (or decided)."""

    change_id: uuid.UUID
    sku: str
    currency: str
    terms: Terms
    start: datetime | None
    end: datetime | None
    change_type: Literal["manual", "bulk"]
    reason: str | None
    notes: str | None
    requested_by: str
    requested_at: datetime
    why: str
    status: ChangeStatus = "pending"
    decided_by: str | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class PricePolicy:
    approval_threshold_pct: Decimal = Decimal(20)
    margin_floor_pct: Decimal = Decimal(10)
    margin_clear_pts: Decimal = Decimal(2)


@dataclass(frozen=True, slots=True)
class Applied:
    state: PriceState
    events: tuple[PriceEvent, ...]
    change: Change | None = None  # a created or decided pending change to store
    closed_windows: tuple[Window, ...] = ()  # windows that left `state.windows`, with their final status


Outcome = Applied | Rejected


def effective_at(base: Terms | None, windows: tuple[Window, ...], at: datetime) -> Terms | None:
    """The terms in force at `at`: the covering open window's, else the base."""
    covering = [w for w in windows if w.status in ("scheduled", "active") and w.covers(at)]
    return covering[0].terms if covering else base


@dataclass(slots=True)
class _Ctx:
    command: PriceCommand
    now: datetime
    policy: PricePolicy
    events: list[PriceEvent] = field(default_factory=list)
    closed: list[Window] = field(default_factory=list)

    def add(self, kind: type[PriceEvent], **fields: Any) -> None:
        event_id = uuid.uuid5(self.command.command_id, str(len(self.events)))
        self.events.append(
            kind(
                event_id=event_id,
                sku=self.command.sku,
                occurred_at=self.now,
                command_id=self.command.command_id,
                **fields,
            )
        )


def decide(
    state: PriceState,
    change: Change | None,
    command: PriceCommand,
    now: datetime,
    *,
    item_exists: bool,
    policy: PricePolicy | None = None,
) -> Outcome:
    """Apply `command` to `state`; `change` is the pending change a decision command names (None: unknown)."""
    ctx = _Ctx(command, now, policy or PricePolicy())
    try:
        if not item_exists:
            raise Reject("unknown_sku", f"item {command.sku} is not registered")
        if command.expected_version is not None and command.expected_version != state.version:
            raise Reject(
                "version_mismatch",
                f"expected version {command.expected_version}, price is at {state.version}",
            )
        new_state, new_change = _apply(state, change, command, ctx)
    except Reject as rejection:
        return rejected(command, now, rejection)
    new_state = _margin_transition(state, new_state, ctx)
    return Applied(new_state, tuple(ctx.events), new_change, tuple(ctx.closed))


def _apply(
    state: PriceState, change: Change | None, command: PriceCommand, ctx: _Ctx
) -> tuple[PriceState, Change | None]:
    match command:
        case SetPrice():
            return _set_price(state, command, ctx)
        case ApprovePriceChange():
            pending = _pending(change, command.change_id, state, command.sku)
            if pending.requested_by == command.actor:
                # Four eyes: the threshold exists so that a large move is seen by a second person.
                raise Reject("self_approval", f"{command.actor} requested this change and cannot approve it")
            approved = replace(pending, status="approved", decided_by=command.actor, comment=command.comment)
            ctx.add(
                PriceChangeApproved,
                currency=state.currency,
                change_id=pending.change_id,
                approved_by=command.actor,
                comment=command.comment,
            )
            start = pending.start if pending.start is None or pending.start > ctx.now else None
            if pending.end is not None and pending.end <= ctx.now:
                raise Reject("invalid_state", "the requested window has already ended")
            new = _commit(state, pending, start, "approval", command.actor, ctx)
            return new, approved
        case RejectPriceChange():
            pending = _pending(change, command.change_id, state, command.sku)
            ctx.add(
                PriceChangeRejected,
                currency=state.currency,
                change_id=pending.change_id,
                rejected_by=command.actor,
                comment=command.comment,
            )
            return state, replace(
                pending, status="rejected", decided_by=command.actor, comment=command.comment
            )
        case CancelScheduledPrice():
            window = _open_window(state, command.change_id, command.sku)
            ctx.add(ScheduledPriceCancelled, currency=state.currency, change_id=window.change_id)
            return _close_window(state, window, "cancelled", ctx), None
        case ActivateScheduledPrice():
            return _activate(state, command, ctx), None
        case ExpireScheduledPrice():
            window = _open_window(state, command.change_id, command.sku)
            if window.status != "active" or window.end is None or window.end > _due_by(command, ctx):
                raise Reject("not_due", f"window {window.change_id} is not due to expire")
            ctx.add(ScheduledPriceExpired, currency=state.currency, change_id=window.change_id)
            return _close_window(state, window, "expired", ctx), None
    raise AssertionError(f"unhandled command {command.type}")  # the union is exhaustive


def _terms(state: PriceState, command: SetPrice) -> Terms:
    current_cost = state.terms.cost if state.terms else None
    cost = command.cost_price if command.cost_price is not None else current_cost
    cur = state.currency
    return Terms(
        round_to_currency(command.selling_price, cur),
        round_to_currency(command.discount_price, cur) if command.discount_price is not None else None,
        round_to_currency(cost, cur) if cost is not None else None,
    )


def _set_price(state: PriceState, command: SetPrice, ctx: _Ctx) -> tuple[PriceState, Change | None]:
    terms = _terms(state, command)
    start, end = command.effective_from, command.effective_until
    if end is not None and end <= ctx.now:
        raise Reject("invalid_state", "effective_until is not in the future")
    change = Change(
        change_id=command.command_id,
        sku=command.sku,
        currency=state.currency,
        terms=terms,
        start=start,
        end=end,
        change_type=command.change_type,
        reason=command.reason,
        notes=command.notes,
        requested_by=command.actor,
        requested_at=ctx.now,
        why="",
    )
    if _is_window(change, ctx.now):
        _require_free(state, start if start and start > ctx.now else ctx.now, end)
    why = _needs_approval(state, terms, ctx.policy)
    if why:
        current = state.terms
        ctx.add(
            PriceChangePendingApproval,
            currency=state.currency,
            change_id=change.change_id,
            requested_by=command.actor,
            old_price=current.effective if current else None,
            new_price=terms.effective,
            change_pct=change_pct(current.effective if current else None, terms.effective),
            margin_pct=margin_pct(terms.effective, terms.cost),
            why=why,
        )
        return state, replace(change, why=why)
    return _commit(
        state, change, start if start and start > ctx.now else None, command.change_type, None, ctx
    ), None


def _is_window(change: Change, now: datetime) -> bool:
    """A change with an end, or a future start, is a window; one that starts now or earlier and never ends
    replaces the base price."""
    return change.end is not None or (change.start is not None and change.start > now)


def _exact_pct(part: Decimal, whole: Decimal) -> Decimal:
    return part / whole * 100


def _needs_approval(state: PriceState, terms: Terms, policy: PricePolicy) -> str:
    # Measured against the base the change replaces (a window in force is temporary), with exact
    # percentages: rounding first would let 20.004% pass a 20% threshold.
    reference = state.base or state.terms
    if reference is not None and reference.effective != 0:
        moved = _exact_pct(terms.effective - reference.effective, reference.effective)
        if abs(moved) > policy.approval_threshold_pct:
            shown = change_pct(reference.effective, terms.effective)
            return f"price moves {shown}% (more than {policy.approval_threshold_pct}%)"
    if terms.cost is not None and terms.effective != 0:
        margin = _exact_pct(terms.effective - terms.cost, terms.effective)
        if margin < policy.margin_floor_pct:
            shown = margin_pct(terms.effective, terms.cost)
            return f"margin {shown}% is under the floor of {policy.margin_floor_pct}%"
    return ""


def _require_free(state: PriceState, start: datetime, end: datetime | None) -> None:
    for window in state.windows:
        if window.overlaps(start, end):
            raise Reject(
                "window_overlap",
                f"window overlaps {window.change_id} ({window.start.isoformat()} to "
                f"{window.end.isoformat() if window.end else 'open end'})",
            )


def _commit(
    state: PriceState,
    change: Change,
    future_start: datetime | None,
    change_type: ChangeType,
    approved_by: str | None,
    ctx: _Ctx,
) -> PriceState:
    """Make an accepted change real: a base change, a window starting now, or a scheduled window."""
    if _is_window(change, ctx.now):
        _require_free(state, future_start or ctx.now, change.end)
    if future_start is not None:
        window = Window(
            change.change_id,
            change.terms,
            future_start,
            change.end,
            "scheduled",
            change.requested_by,
            approved_by,
        )
        ctx.add(
            PriceChangeScheduled,
            currency=state.currency,
            change_id=change.change_id,
            selling_price=change.terms.selling,
            discount_price=change.terms.discount,
            effective_from=future_start,
            effective_until=change.end,
        )
        return replace(state, windows=(*state.windows, window), version=state.version + 1)
    if change.end is not None:
        window = Window(
            change.change_id, change.terms, ctx.now, change.end, "active", change.requested_by, approved_by
        )
        new = replace(state, windows=(*state.windows, window), version=state.version + 1)
    else:
        new = replace(state, base=change.terms, version=state.version + 1)
    _announce(state, new, change.change_id, change_type, ctx, change, approved_by)
    return new


def _announce(
    old: PriceState,
    new: PriceState,
    change_id: uuid.UUID,
    change_type: ChangeType,
    ctx: _Ctx,
    change: Change | None = None,
    approved_by: str | None = None,
    window: Window | None = None,
) -> None:
    terms = new.terms
    if terms is None:
        return
    before = old.terms
    ctx.add(
        PriceChanged,
        currency=new.currency,
        change_id=change_id,
        change_type=change_type,
        old_price=before.effective if before else None,
        new_price=terms.effective,
        selling_price=terms.selling,
        discount_price=terms.discount,
        cost_price=terms.cost,
        margin_pct=margin_pct(terms.effective, terms.cost),
        markup_pct=markup_pct(terms.effective, terms.cost),
        reason=change.reason if change else None,
        notes=change.notes if change else None,
        effective_from=window.start if window else (change.start if change else None),
        effective_until=window.end if window else (change.end if change else None),
        requested_by=window.requested_by
        if window
        else (change.requested_by if change else ctx.command.actor),
        approved_by=window.approved_by if window else approved_by,
        version=new.version,
    )


def _pending(change: Change | None, change_id: uuid.UUID, state: PriceState, sku: str) -> Change:
    if change is None or change.sku != sku or change.sku != state.sku or change.currency != state.currency:
        raise Reject("unknown_change", f"no price change {change_id} for {state.sku}")
    if change.status != "pending":
        raise Reject("change_closed", f"price change {change_id} is already {change.status}")
    return change


def _open_window(state: PriceState, change_id: uuid.UUID, sku: str) -> Window:
    for window in state.windows:
        if window.change_id == change_id and state.sku == sku:
            return window
    raise Reject("change_closed", f"no scheduled or active price window {change_id} for {state.sku}")


def _close_window(state: PriceState, window: Window, status: WindowStatus, ctx: _Ctx) -> PriceState:
    ctx.closed.append(replace(window, status=status))
    new = replace(
        state,
        windows=tuple(w for w in state.windows if w.change_id != window.change_id),
        version=state.version + 1,
    )
    if window.status == "active":
        _announce(state, new, window.change_id, "scheduled", ctx, window=window)
    return new


def _due_by(command: PriceCommand, ctx: _Ctx) -> datetime:
    # The scheduler stamps issued_at with the database clock that found the window due; trust it only
    # within a small clock skew, so a hand-made command cannot start a window early.
    return max(ctx.now, min(command.issued_at, ctx.now + CLOCK_SKEW))


def _activate(state: PriceState, command: ActivateScheduledPrice, ctx: _Ctx) -> PriceState:
    window = _open_window(state, command.change_id, command.sku)
    if window.status != "scheduled":
        raise Reject("change_closed", f"window {window.change_id} is already {window.status}")
    if window.start > _due_by(command, ctx):
        raise Reject("not_due", f"window {window.change_id} starts at {window.start.isoformat()}")
    if window.end is not None and window.end <= ctx.now:
        # The worker was down for the whole window: it never became effective.
        ctx.add(ScheduledPriceExpired, currency=state.currency, change_id=window.change_id)
        return _close_window(state, window, "expired", ctx)
    ctx.add(ScheduledPriceActivated, currency=state.currency, change_id=window.change_id)
    if window.end is None:
        # A scheduled change without an end is a future base price: it replaces the base for good.
        ctx.closed.append(replace(window, status="expired"))
        rest = tuple(w for w in state.windows if w.change_id != window.change_id)
        new = replace(state, base=window.terms, windows=rest, version=state.version + 1)
        _announce(state, new, window.change_id, "scheduled", ctx, window=window)
        return new
    active = replace(window, status="active")
    new = replace(
        state,
        windows=tuple(active if w.change_id == window.change_id else w for w in state.windows),
        version=state.version + 1,
    )
    _announce(state, new, window.change_id, "scheduled", ctx, window=window)
    return new


def margin_state(current: MarginState, margin: Decimal | None, policy: PricePolicy) -> MarginState:
    """Below the floor -> below; back to ok only at floor + clear points (no flapping)."""
    if margin is None:
        return current
    if margin < policy.margin_floor_pct:
        return "below"
    if current == "below" and margin < policy.margin_floor_pct + policy.margin_clear_pts:
        return "below"
    return "ok"


def _margin_transition(old: PriceState, new: PriceState, ctx: _Ctx) -> PriceState:
    terms = new.terms
    if terms is None:
        return new
    margin = margin_pct(terms.effective, terms.cost)
    state = margin_state(old.margin_state, margin, ctx.policy)
    if state == old.margin_state:
        return new
    kind = MarginBelowFloor if state == "below" else MarginRecovered
    ctx.add(kind, currency=new.currency, margin_pct=margin, floor_pct=ctx.policy.margin_floor_pct)
    return replace(new, margin_state=state)
