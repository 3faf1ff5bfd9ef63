"""Matching events to subscriptions, and what the email and webhook say."""

from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from workers.notifier.matching import LOCATION_ALERTS, EventFacts, Filter, matches, route
from workers.notifier.render import email, item_link, webhook_body

EVENT = EventFacts(uuid.uuid4(), "low_stock_detected", "LAMP-01", "lighting")


def f(
    types: frozenset[str] | set[str] = frozenset(),
    skus: frozenset[str] | set[str] = frozenset(),
    cats: frozenset[str] | set[str] = frozenset(),
    locations: frozenset[str] | set[str] = frozenset(),
) -> Filter:
    return Filter(uuid.uuid4(), frozenset(types), frozenset(skus), frozenset(cats), frozenset(locations))


def test_empty_filters_match_everything_and_each_filter_narrows() -> None:
    assert matches(f(), EVENT)
    assert matches(f({"low_stock_detected"}, {"LAMP-01"}, {"lighting"}), EVENT)
    assert not matches(f({"out_of_stock"}), EVENT)
    assert not matches(f(skus={"LAMP-02"}), EVENT)
    assert not matches(f(cats={"kitchen"}), EVENT)
    assert not matches(f(cats={"lighting"}), EventFacts(EVENT.event_id, EVENT.event_type, "X", None))


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=5), st.lists(st.booleans(), max_size=4))
def test_route_yields_one_pair_per_matching_subscription(types: list[str], wide: list[bool]) -> None:
    events = [EventFacts(uuid.uuid4(), t, "S", None) for t in types]
    filters = [f() if w else f({"a"}) for w in wide]
    pairs = route(events, filters)
    expected = sum(1 for e in events for flt in filters if not flt.event_types or e.event_type == "a")
    assert len(pairs) == expected
    assert len(set((e.event_id, s) for e, s in pairs)) == len(pairs)


def at(event_type: str, location: str | None) -> EventFacts:
    return EventFacts(uuid.uuid4(), event_type, "LAMP-01", "lighting", location)


def test_a_per_location_alert_goes_only_to_subscriptions_naming_its_location() -> None:
    alert = at("low_stock_detected", "WH-EU-1")
    assert matches(f(locations={"WH-EU-1"}), alert)
    assert matches(f({"low_stock_detected"}, locations={"WH-EU-1", "STORE-2"}), alert)
    assert not matches(f(), alert)
    assert not matches(f(locations={"STORE-2"}), alert)
    assert not matches(f({"out_of_stock"}, locations={"WH-EU-1"}), alert)


def test_every_other_event_ignores_locations() -> None:
    wants_one_location = f(locations={"WH-EU-1"})
    for event in (
        at("low_stock_detected", None),  # the SKU-level alert on the totals
        at("stock_changed", "STORE-2"),  # carries a location but is no alert
        at("reservation_made", "STORE-2"),
        at("price_changed", None),
    ):
        assert matches(f(), event)
        assert matches(wants_one_location, event)


def _before_locations(flt: Filter, event: EventFacts) -> bool:
    """The rule as it was before subscriptions had locations (and events carried none)."""
    return (
        (not flt.event_types or event.event_type in flt.event_types)
        and (not flt.skus or event.sku in flt.skus)
        and (not flt.categories or (event.category is not None and event.category in flt.categories))
    )


TYPES = [*sorted(LOCATION_ALERTS), "stock_changed", "reservation_made", "price_changed"]


@given(
    st.lists(
        st.tuples(st.sampled_from(TYPES), st.sampled_from(["A", "B"]), st.sampled_from([None, "WH", "ST"])),
        max_size=8,
    ),
    st.lists(
        st.tuples(
            st.sets(st.sampled_from(TYPES), max_size=2),
            st.sets(st.sampled_from(["A", "B"]), max_size=1),
            st.sets(st.sampled_from(["lighting", "kitchen"]), max_size=1),
        ),
        max_size=4,
    ),
)
def test_an_existing_subscription_receives_exactly_what_it_received_before(
    stream: list[tuple[str, str, str | None]], old: list[tuple[set[str], set[str], set[str]]]
) -> None:
    """Subscriptions without locations, fed the new event stream (per-location alerts added, other events
    now carrying a location), get the deliveries they got from the old stream: no more, no fewer."""
    filters = [f(types, skus, cats) for types, skus, cats in old]
    events = [EventFacts(uuid.uuid4(), t, sku, "lighting", loc) for t, sku, loc in stream]
    old_stream = [e for e in events if not (e.location is not None and e.event_type in LOCATION_ALERTS)]
    expected = [(e, flt.subscription_id) for e in old_stream for flt in filters if _before_locations(flt, e)]
    assert route(events, filters) == expected


PAYLOAD = {
    "event_id": "7d1f0b36-3c55-4b8e-9d0e-2f1d7a0c0a01",
    "sku": "LAMP-01",
    "type": "low_stock_detected",
    "occurred_at": "2026-11-27T12:00:00Z",
    "previous": "ok",
    "current": "low",
    "available": 2,
    "min_stock_level": 5,
    "max_stock_level": None,
}


def test_email_names_sku_item_levels_and_links_the_dashboard() -> None:
    mail = email("low_stock_detected", PAYLOAD, item_name="Desk <lamp>", public_url="https://inv.example/")
    assert "LAMP-01" in mail.subject
    assert "Low stock" in mail.subject
    assert "Desk <lamp>" in mail.subject
    for text in ("Available: 2", "Minimum level: 5", "Item: Desk <lamp>"):
        assert text in mail.text
    link = "https://inv.example/dashboard/#/items/LAMP-01"
    assert link == item_link("https://inv.example/", "LAMP-01")
    assert link in mail.text
    assert f'href="{link}"' in mail.html
    assert "Desk &lt;lamp&gt;" in mail.html
    assert "<lamp>" not in mail.html


def test_price_email_names_the_prices() -> None:
    payload = {"sku": "MUG-1", "old_price": "9.90", "new_price": "12.50", "currency": "EUR"}
    mail = email("price_changed", payload, item_name="Mug", public_url="http://x")
    assert "12.50" in mail.subject
    assert "Old price: 9.90" in mail.text
    assert "Currency: EUR" in mail.text


def test_webhook_body_is_type_timestamp_data() -> None:
    body = json.loads(webhook_body("low_stock_detected", PAYLOAD))
    assert body == {"type": "low_stock_detected", "timestamp": "2026-11-27T12:00:00Z", "data": PAYLOAD}


@given(
    name=st.text(max_size=60),
    sku=st.text(max_size=20),
    reason=st.text(max_size=40),
    event_type=st.text(max_size=20),
)
def test_the_subject_is_one_line_whatever_the_event_carries(
    name: str, sku: str, reason: str, event_type: str
) -> None:
    """Old rows and events from upstream producers may carry control characters the contracts now refuse;
    a line break in a header would let them add headers of their own."""
    payload = {"sku": sku, "reason": reason, "available": 1}
    mail = email(event_type, payload, item_name=name, public_url="https://inv.example.com")
    assert not any(c in mail.subject for c in "\r\n\x00\x0b\x0c\x85\u2028\u2029")


def test_line_breaks_in_a_name_become_spaces() -> None:
    mail = email("out_of_stock", {"sku": "LAMP-1"}, item_name="Lamp\r\nBcc: x@example.com", public_url="")
    assert mail.subject == "[inventory-monitor] Out of stock: LAMP-1 (Lamp Bcc: x@example.com)"
    assert "Item: Lamp Bcc: x@example.com\n" in mail.text
