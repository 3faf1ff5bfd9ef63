"""The per-item alert state machine on available stock: ok -> low -> out, and over.

A clear margin keeps a level that bounces around a threshold from flapping: leaving `low` needs
available > min + margin, leaving `over` needs available <= max - margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from contracts.stock_events import (
    AlertEvent,
    AlertState,
    BackInStock,
    LowStockDetected,
    OutOfStock,
    OverstockDetected,
    StockLevelNormal,
)


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    clear_margin_pct: int = 10

    def margin(self, level: int) -> int:
        return math.ceil(level * self.clear_margin_pct / 100)


def classify(
    current: AlertState,
    available: int,
    min_level: int,
    max_level: int | None,
    *,
    trackable: bool,
    policy: AlertPolicy,
) -> AlertState:
    if not trackable:
        return "ok"
    if available <= 0:
        return "out"
    if available <= min_level:
        return "low"
    # The current state holds until the level is past its clear margin; checked before the raw "over"
    # test so that max == min cannot flap between low and over.
    if current in ("low", "out") and available <= min_level + policy.margin(min_level):
        return "low"
    if max_level is not None and available > max_level:
        return "over"
    if current == "over" and max_level is not None and available > max_level - policy.margin(max_level):
        return "over"
    return "ok"


def transition_event_type(previous: AlertState, current: AlertState) -> type[AlertEvent] | None:
    """Exactly one event per transition, none while the state holds."""
    if previous == current:
        return None
    if current == "out":
        return OutOfStock
    if previous == "out":
        return BackInStock
    if current == "low":
        return LowStockDetected
    if current == "over":
        return OverstockDetected
    return StockLevelNormal
