"""The relay's decisions as plain functions and small state machines: no I/O, no clock of their own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

from contracts.live import Filter, Position


class Step(Enum):
    DELIVER = "deliver"  # the next offset: pass it on
    DUPLICATE = "duplicate"  # already passed on (a gap fill overlapped the live feed): drop it
    GAP = "gap"  # offsets are missing before this one: fill them from the history first
    NEW_EPOCH = "new_epoch"  # Redis lost its data: nothing before this can be vouched for


@dataclass(slots=True)
class Cursor:
    """The relay's position in one channel's feed. `epoch` None: nothing seen yet (a fresh relay)."""

    epoch: str | None = None
    offset: int = 0

    def step(self, epoch: str, offset: int) -> Step:
        if epoch != self.epoch:
            return Step.NEW_EPOCH
        if offset <= self.offset:
            return Step.DUPLICATE
        if offset == self.offset + 1:
            return Step.DELIVER
        return Step.GAP

    def advance(self, epoch: str, offset: int) -> None:
        self.epoch, self.offset = epoch, offset


def fills_gap(after: int, upto: int, offsets: list[int]) -> bool:
    """Whether history entries `offsets` are exactly after+1 .. upto-1 (what a gap before `upto` lacks)."""
    return offsets == list(range(after + 1, upto))


def replay_from(wanted: Position | None, epoch: str, offset: int) -> int | None:
    """The offset after which to replay the history for a subscribe, or None for a snapshot.
    `epoch`/`offset`: the channel now. Only a position of the current epoch, not ahead of it, can be
    recovered; whether the history still holds what follows is for `replayable` to judge."""
    if wanted is None or wanted.epoch != epoch or wanted.offset > offset:
        return None
    return wanted.offset


def replayable(after: int, offset: int, offsets: list[int]) -> bool:
    """Whether history entries `offsets` continue `after` without a hole and reach `offset` (the channel
    position read before them). A trimmed history starts later and fails this."""
    return offsets == list(range(after + 1, after + 1 + len(offsets))) and after + len(offsets) >= offset


# The keys that place an event at a location: `location` (stock_changed, reservation_made, a per-location
# alert, location_levels_set) or both ends of a stock_transferred.
_LOCATION_KEYS = ("location", "from_location", "to_location")


def event_locations(payload: str) -> tuple[str, ...]:
    """The locations an event JSON names at its top level; () for an event that has none (item details,
    prices, SKU-level alerts with `location: null`, rejections). Parsed only when the text mentions one."""
    if 'location"' not in payload:
        return ()
    event = json.loads(payload)
    if not isinstance(event, dict):
        return ()
    return tuple(place for key in _LOCATION_KEYS if isinstance(place := event.get(key), str))


@dataclass(frozen=True, slots=True)
class Match:
    """A subscription's filter, prepared for the hot path."""

    skus: frozenset[str] | None
    category: str | None
    locations: frozenset[str] | None = None

    @classmethod
    def of(cls, wanted: Filter | None) -> Match:
        if wanted is None:
            return cls(None, None)
        return cls(
            frozenset(wanted.skus) if wanted.skus is not None else None,
            wanted.category,
            frozenset(wanted.locations) if wanted.locations is not None else None,
        )

    @property
    def everything(self) -> bool:
        return self.skus is None and self.category is None and self.locations is None

    def accepts(self, sku: str, category: str | None, moved: bool, places: tuple[str, ...] = ()) -> bool:
        """`category`: the item's current category; `moved`: the event changes it. A category filter
        passes a move whatever the categories, so a client learns that an item left its category.
        `places`: the event's locations (event_locations); an event with none passes a location filter,
        one with several (a transfer) passes if any of them is wanted."""
        if self.skus is not None and sku not in self.skus:
            return False
        if self.locations is not None and places and self.locations.isdisjoint(places):
            return False
        return self.category is None or moved or self.category == category


class TokenBucket:
    """At most `rate` frames a second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = now

    def allow(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
