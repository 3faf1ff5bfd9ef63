"""Which subscriptions an event goes to: a pure function of the event and the subscriptions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Filter:
    subscription_id: UUID
    event_types: frozenset[str]  # empty: every type
    skus: frozenset[str]  # empty: every SKU
    categories: frozenset[str]  # empty: every category


@dataclass(frozen=True, slots=True)
class EventFacts:
    event_id: UUID
    event_type: str
    sku: str
    category: str | None  # the item's category when the event was handled


def matches(f: Filter, event: EventFacts) -> bool:
    return (
        (not f.event_types or event.event_type in f.event_types)
        and (not f.skus or event.sku in f.skus)
        and (not f.categories or (event.category is not None and event.category in f.categories))
    )


def route(events: Iterable[EventFacts], filters: Sequence[Filter]) -> list[tuple[EventFacts, UUID]]:
    """(event, subscription) pairs, in event order: one delivery each."""
    return [(e, f.subscription_id) for e in events for f in filters if matches(f, e)]
