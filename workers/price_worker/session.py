"""The pricing domain's part of a batch transaction: lock prices, windows and pending changes; decide;
write what changed and one history row per change of the price in force."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import asyncpg

from contracts.money import change_pct
from contracts.price_commands import ApprovePriceChange, PriceCommand, RejectPriceChange, SetPrice
from contracts.price_events import PriceChanged, PriceEvent
from db import price_repo
from db.price_repo import ChangeRow, HistoryRow, Key, PriceRow, WindowRow
from db.writes import Write, present
from workers.pipeline.batch import Verdict
from workers.rules.pricing import (
    Applied,
    Change,
    ChangeStatus,
    MarginState,
    PricePolicy,
    PriceState,
    Terms,
    Window,
    WindowStatus,
    decide,
)


def window_from_row(r: WindowRow) -> Window:
    terms = Terms(r.selling_price, r.discount_price, r.cost_price)
    status = cast(WindowStatus, r.status)
    return Window(
        r.change_id, terms, r.effective_from, r.effective_until, status, r.requested_by, r.approved_by
    )


def row_from_window(w: Window, sku: str, currency: str) -> WindowRow:
    t = w.terms
    return WindowRow(
        w.change_id, sku, currency, t.selling, t.discount, t.cost, w.start, w.end, w.status, w.requested_by,
        w.approved_by,
    )  # fmt: skip


def change_from_row(r: ChangeRow) -> Change:
    return Change(
        change_id=r.change_id,
        sku=r.sku,
        currency=r.currency,
        terms=Terms(r.selling_price, r.discount_price, r.cost_price),
        start=r.effective_from,
        end=r.effective_until,
        change_type="bulk" if r.change_type == "bulk" else "manual",
        reason=r.reason,
        notes=r.notes,
        requested_by=r.requested_by,
        requested_at=r.requested_at,
        why=r.why,
        status=cast(ChangeStatus, r.status),
        decided_by=r.decided_by,
        comment=r.comment,
    )


def row_from_change(c: Change) -> ChangeRow:
    t = c.terms
    return ChangeRow(
        c.change_id, c.sku, c.currency, t.selling, t.discount, t.cost, c.start, c.end, c.change_type,
        c.reason, c.notes, c.why, c.status, c.requested_by, c.requested_at, c.decided_by, c.comment,
    )  # fmt: skip


def row_from_state(s: PriceState) -> PriceRow:
    base, terms, active = s.base, s.terms, s.active
    return PriceRow(
        s.sku,
        s.currency,
        base.selling if base else None,
        base.discount if base else None,
        base.cost if base else None,
        terms.effective if terms else None,
        active.change_id if active else None,
        s.margin_state,
        s.version,
    )


def history_rows(command: PriceCommand, events: Sequence[PriceEvent], now: datetime) -> list[HistoryRow]:
    rows = []
    for e in events:
        if isinstance(e, PriceChanged):
            amount = e.new_price - e.old_price if e.old_price is not None else None
            rows.append(
                HistoryRow(
                    e.change_id,
                    command.command_id,
                    e.sku,
                    e.currency,
                    e.old_price,
                    e.new_price,
                    amount,
                    change_pct(e.old_price, e.new_price),
                    e.selling_price,
                    e.discount_price,
                    e.cost_price,
                    e.margin_pct,
                    e.change_type,
                    e.reason,
                    e.notes,
                    e.effective_from,
                    e.effective_until,
                    e.requested_by,
                    e.approved_by,
                    now,
                )
            )
    return rows


def _change_id(command: PriceCommand) -> uuid.UUID | None:
    return None if isinstance(command, SetPrice) else command.change_id


@dataclass(slots=True)
class PriceSession:
    policy: PricePolicy
    states: dict[Key, PriceState] = field(default_factory=dict)
    changes: dict[uuid.UUID, Change] = field(default_factory=dict)
    window_keys: dict[uuid.UUID, Key] = field(default_factory=dict)
    items: set[str] = field(default_factory=set)
    dirty: set[Key] = field(default_factory=set)
    windows_out: dict[uuid.UUID, WindowRow] = field(default_factory=dict)
    changes_out: dict[uuid.UUID, Change] = field(default_factory=dict)
    history: list[HistoryRow] = field(default_factory=list)

    def _key(self, command: PriceCommand) -> Key | None:
        if isinstance(command, SetPrice):
            return (command.sku, command.currency)
        if isinstance(command, ApprovePriceChange | RejectPriceChange):
            change = self.changes.get(command.change_id)
            return (change.sku, change.currency) if change else None
        return self.window_keys.get(command.change_id)

    async def load(self, pg: asyncpg.Connection, commands: Sequence[PriceCommand]) -> None:
        ids = [i for c in commands if (i := _change_id(c)) is not None]
        self.changes = {r.change_id: change_from_row(r) for r in await price_repo.lock_changes(pg, ids)}
        self.window_keys = await price_repo.window_keys(pg, ids)
        keys = {k for c in commands if (k := self._key(c)) is not None}
        prices = {(r.sku, r.currency): r for r in await price_repo.lock_prices(pg, keys)}
        windows: dict[Key, list[Window]] = {}
        for w in await price_repo.open_windows(pg, keys):
            windows.setdefault((w.sku, w.currency), []).append(window_from_row(w))
        for key in keys:
            row = prices.get(key)
            base = (
                Terms(row.selling_price, row.discount_price, row.cost_price)
                if row and row.selling_price is not None
                else None
            )
            self.states[key] = PriceState(
                sku=key[0],
                currency=key[1],
                base=base,
                windows=tuple(windows.get(key, ())),
                margin_state=cast(MarginState, row.margin_state) if row else "ok",
                version=row.version if row else 0,
            )
        self.items = await price_repo.existing_skus(pg, (c.sku for c in commands))

    def decide(self, command: PriceCommand, now: datetime) -> Verdict:
        key = self._key(command)
        state = self.states.get(key) if key else None
        change_id = _change_id(command)
        outcome = decide(
            state or PriceState(command.sku, ""),
            self.changes.get(change_id) if change_id else None,
            command,
            now,
            item_exists=command.sku in self.items,
            policy=self.policy,
        )
        if not isinstance(outcome, Applied):
            return Verdict((outcome.event,), f"{outcome.code}: {outcome.reason}")
        new = outcome.state
        if state is not None and key is not None and new != state:
            self.states[key] = new
            self.dirty.add(key)
        sku, currency = new.sku, new.currency
        old_windows = state.windows if state else ()
        for window in (*outcome.closed_windows, *(w for w in new.windows if w not in old_windows)):
            self.windows_out[window.change_id] = row_from_window(window, sku, currency)
            self.window_keys[window.change_id] = (sku, currency)
        if outcome.change is not None:
            self.changes[outcome.change.change_id] = self.changes_out[outcome.change.change_id] = (
                outcome.change
            )
        self.history.extend(history_rows(command, outcome.events, now))
        return Verdict(outcome.events)

    def save(self, now: datetime) -> list[Write]:
        # Closing rows first: an exclusion constraint is checked row by row, and a window closed in this
        # batch may be followed by a new one in the same slot.
        windows = sorted(self.windows_out.values(), key=lambda w: w.status in ("scheduled", "active"))
        return present(
            price_repo.upsert_prices([row_from_state(self.states[k]) for k in sorted(self.dirty)]),
            price_repo.upsert_windows(windows),
            price_repo.upsert_changes([row_from_change(c) for c in self.changes_out.values()]),
            price_repo.insert_history(self.history),
        )
