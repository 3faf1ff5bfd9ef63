"""What a stock command does to one item's state."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from contracts.stock_commands import AdjustStock, ReceiveStock, RegisterItem, StockCommand
from contracts.stock_events import CommandRejected, ItemRegistered, RejectionCode, StockChanged, StockEvent


@dataclass(frozen=True, slots=True)
class ItemState:
    sku: str
    name: str
    description: str | None
    category: str | None
    on_hand: int
    reserved: int
    min_stock_level: int
    max_stock_level: int | None
    cost_price: Decimal | None
    weight_grams: int | None
    dimensions: str | None
    is_active: bool
    is_trackable: bool
    version: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


@dataclass(frozen=True, slots=True)
class Applied:
    state: ItemState
    events: tuple[StockEvent, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    code: RejectionCode
    reason: str
    event: CommandRejected


Outcome = Applied | Rejected


def event_id(command_id: uuid.UUID, index: int) -> uuid.UUID:
    """Event ids derive from the command id so a replayed command yields the same ids."""
    return uuid.uuid5(command_id, str(index))


def decide(state: ItemState | None, command: StockCommand, now: datetime) -> Outcome:
    """Apply `command` to `state` (None: the SKU is unknown) at time `now`."""
    if isinstance(command, RegisterItem):
        if state is not None:
            return _reject(command, now, "already_exists", f"item {command.sku} is already registered")
        return _register(command, now)
    if state is None:
        return _reject(command, now, "unknown_sku", f"item {command.sku} is not registered")
    if command.expected_version is not None and command.expected_version != state.version:
        return _reject(
            command,
            now,
            "version_mismatch",
            f"expected version {command.expected_version}, item is at version {state.version}",
        )
    if not state.is_active:
        return _reject(command, now, "inactive_item", f"item {command.sku} is deactivated")
    if isinstance(command, ReceiveStock):
        return _move(state, command, now, command.quantity, "receive_stock")
    return _adjust(state, command, now)


def _register(command: RegisterItem, now: datetime) -> Applied:
    state = ItemState(
        sku=command.sku,
        name=command.name,
        description=command.description,
        category=command.category,
        on_hand=command.initial_quantity,
        reserved=0,
        min_stock_level=command.min_stock_level,
        max_stock_level=command.max_stock_level,
        cost_price=command.cost_price,
        weight_grams=command.weight_grams,
        dimensions=command.dimensions,
        is_active=True,
        is_trackable=command.is_trackable,
        version=1,
    )
    event = ItemRegistered(
        event_id=event_id(command.command_id, 0),
        sku=state.sku,
        occurred_at=now,
        command_id=command.command_id,
        name=state.name,
        category=state.category,
        on_hand=state.on_hand,
        min_stock_level=state.min_stock_level,
        max_stock_level=state.max_stock_level,
        cost_price=state.cost_price,
        version=state.version,
    )
    return Applied(state, (event,))


def _adjust(state: ItemState, command: AdjustStock, now: datetime) -> Outcome:
    if state.on_hand + command.delta < state.reserved:
        return _reject(
            command,
            now,
            "insufficient_stock",
            f"adjusting by {command.delta} would leave on-hand {state.on_hand + command.delta} "
            f"below reserved {state.reserved}",
        )
    return _move(state, command, now, command.delta, command.reason_code)


def _move(state: ItemState, command: StockCommand, now: datetime, delta: int, reason: str) -> Applied:
    new = replace(state, on_hand=state.on_hand + delta, version=state.version + 1)
    event = StockChanged(
        event_id=event_id(command.command_id, 0),
        sku=new.sku,
        occurred_at=now,
        command_id=command.command_id,
        delta=delta,
        reason=reason,
        on_hand=new.on_hand,
        reserved=new.reserved,
        available=new.available,
        version=new.version,
    )
    return Applied(new, (event,))


def _reject(command: StockCommand, now: datetime, code: RejectionCode, reason: str) -> Rejected:
    event = CommandRejected(
        event_id=event_id(command.command_id, 0),
        sku=command.sku,
        occurred_at=now,
        command_id=command.command_id,
        command_type=command.type,
        code=code,
        reason=reason,
    )
    return Rejected(code, reason, event)
