"""Which subscriptions an event goes to: a pure function of the event and the subscriptions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import get_args
from uuid import UUID

from contracts.stock_events import AlertEvent

# The alert events that may name a location: one of them WITH a location is the per-(SKU, location)
# alert, which only subscriptions naming that location want. Without one it is the SKU-level alert.
# Taken from the contract's union, so an alert event added there is not missed here.
LOCATION_ALERTS = frozenset(str(m.model_fields["type"].default) for m in get_args(AlertEvent))


@dataclass(frozen=True, slots=True)
class Filter:
    subscription_id: UUID
    event_types: frozenset[str]  # empty: every type
    skus: frozenset[str]  # empty: every SKU
    categories: frozenset[str]  # empty: every category
    locations: frozenset[str] = frozenset()  # the per-location alerts it wants; empty: none of them


@dataclass(frozen=True, slots=True)
class EventFacts:
    event_id: UUID
    event_type: str
    sku: str
    category: str | None  # the item's category when the event was handled
    location: str | None = None  # the event's location, if it carries one


def _location_matches(f: Filter, event: EventFacts) -> bool:
    # Every other event ignores `locations`, so a subscription made before locations existed gets exactly
    # what it got then: the SKU-level alert once, never one per location as well.
    if event.location is None or event.event_type not in LOCATION_ALERTS:
        return True
    return event.location in f.locations


def matches(f: Filter, event: EventFacts) -> bool:
    return (
        (not f.event_types or event.event_type in f.event_types)
        and (not f.skus or event.sku in f.skus)
        and (not f.categories or (event.category is not None and event.category in f.categories))
        and _location_matches(f, event)
    )


def route(events: Iterable[EventFacts], filters: Sequence[Filter]) -> list[tuple[EventFacts, UUID]]:
    """(event, subscription) pairs, in event order: one delivery each."""
    return [(e, f.subscription_id) for e in events for f in filters if matches(f, e)]
