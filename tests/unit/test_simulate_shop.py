"""The traffic model of `invmon simulate`: a sale's fulfilment only follows its accepted reservation, and
the commands stay ones the rules accept (nothing reserved beyond what is available, no count under the
reserved units, prices above cost)."""

from __future__ import annotations

import json
import random
from collections import Counter
from decimal import Decimal

from invmon.simulate import COST, Shop


def test_fulfilments_follow_accepted_reservations_and_stock_stays_consistent() -> None:
    shop = Shop(3, random.Random(18))
    for shelf in shop.shelves.values():
        shelf.on_hand = 3  # nearly sold out: the model must restock before it sells
    reserved: dict[str, int] = {}
    kinds: Counter[str] = Counter()
    for _ in range(3000):
        request = shop.next()
        kinds[request.kind] += 1
        shelf = shop.shelves[request.sku]
        if request.kind == "fulfil":
            assert reserved.pop(request.reservation) == request.quantity, "only a reservation taken earlier"
            assert request.path.endswith(f"/reservations/{request.reservation}/fulfil")
        elif request.kind == "reserve":
            assert request.body["quantity"] <= shelf.on_hand - shelf.reserved, "never more than available"
            reserved[request.body["reservation_id"]] = request.body["quantity"]
        elif request.kind == "count":
            assert request.body["counted_quantity"] >= shelf.reserved
        elif request.kind == "price":
            assert Decimal(request.body["selling_price"]) > COST
        shop.taken(request)  # as if the edge accepted everything
        assert shelf.on_hand >= shelf.reserved >= 0
    assert set(kinds) == {"reserve", "fulfil", "restock", "count", "price"}
    assert sum(shelf.reserved for shelf in shop.shelves.values()) == sum(reserved.values())


def test_a_bad_record_is_valid_json_that_no_schema_accepts_and_names_its_sender() -> None:
    command_id, key, value = Shop(2, random.Random(1)).bad_record("key:0123456789abcdef")
    body = json.loads(value)
    assert body["command_id"] == str(command_id)
    assert body["actor"] == "key:0123456789abcdef"
    assert body["sku"].encode() == key
    assert body["quantity"] < 0
