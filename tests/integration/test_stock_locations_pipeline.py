"""One SKU across several locations on the real stack: concurrent producers send receipts, transfers,
reservations and their closes; two stock worker processes apply them. Whatever the interleaving, the
item's totals are the sums over its locations, the ledger per location sums to that location's stock,
reservations match what is reserved where, and nothing is ever negative."""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from infra.settings import Settings
from tests.integration import helpers as h

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

PRODUCERS = 4
PER_PRODUCER = 60


def script(sku: str, places: list[str], run: str, producer: int, rng: random.Random) -> list[dict[str, Any]]:
    """A producer's commands: receipts, transfers and reservations at random places; closes of its own."""
    commands: list[dict[str, Any]] = []
    held: list[str] = []
    for n in range(PER_PRODUCER):
        roll = rng.random()
        if roll < 0.25:
            commands.append(h.receive(sku, rng.randint(1, 6), location=rng.choice(places)))
        elif roll < 0.55:
            source, target = rng.sample(places, 2)
            commands.append(h.transfer(sku, source, target, rng.randint(1, 8)))
        elif roll < 0.8 or not held:
            rid = f"{run}-p{producer}-{n}"
            held.append(rid)
            commands.append(h.reserve(sku, rid, rng.randint(1, 4), location=rng.choice(places)))
        else:
            rid = held.pop(rng.randrange(len(held)))
            close = h.fulfil if rng.random() < 0.5 else h.release
            commands.append(close(sku, rid))
    return commands


async def test_one_sku_across_locations_under_concurrent_producers(
    stack: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    run = h.run_id()
    sku = f"LOCIT-{run}"
    places = ["default", *(f"IT-{run}-{i}" for i in range(3))]
    for code in places[1:]:
        await db.execute("INSERT INTO locations (code, name, kind) VALUES ($1, $1, 'store')", code)
    rng = random.Random(run)
    scripts = [script(sku, places, run, p, rng) for p in range(PRODUCERS)]

    async def produce(commands: list[dict[str, Any]]) -> None:
        async with h.CommandProducer(stack) as producer:
            for command in commands:
                await producer.command(command)

    with h.workers(stack, tmp_path, count=2):
        async with h.CommandProducer(stack) as producer:
            registered = h.register(sku, 20, location=places[1])
            await producer.command(registered)
            await h.wait_processed(db, registered, what="the item registration")
        await asyncio.gather(*(produce(s) for s in scripts))
        ids = [uuid.UUID(c["command_id"]) for s in scripts for c in s]
        await h.wait_until(
            lambda: h.processed_count(db, ids),
            lambda n: n == len(ids),
            within=60,
            what=f"{len(ids)} commands",
        )

    rows = await db.fetch(
        "SELECT status, reason FROM processed_commands WHERE command_id = ANY($1::uuid[])", ids
    )
    applied = sum(r["status"] == "applied" for r in rows)
    reasons = {r["reason"].split(":", 1)[0] for r in rows if r["status"] == "rejected"}
    assert reasons <= {"insufficient_stock", "unknown_reservation", "reservation_closed"}, reasons
    assert applied > len(ids) // 3  # enough moved for the checks to mean something

    item = await db.fetchrow(
        "SELECT stock_quantity, reserved_quantity, version FROM items WHERE sku = $1", sku
    )
    stock = {
        r["location"]: (r["on_hand"], r["reserved"])
        for r in await db.fetch("SELECT location, on_hand, reserved FROM item_stock WHERE sku = $1", sku)
    }
    assert item["version"] == applied + 1
    assert (item["stock_quantity"], item["reserved_quantity"]) == (
        sum(on_hand for on_hand, _ in stock.values()),
        sum(reserved for _, reserved in stock.values()),
    )
    assert all(0 <= reserved <= on_hand for on_hand, reserved in stock.values())
    ledger = {
        r["location"]: (r["d"], r["r"])
        for r in await db.fetch(
            "SELECT location, sum(delta)::bigint AS d, sum(reserved_delta)::bigint AS r FROM stock_ledger"
            " WHERE sku = $1 GROUP BY location",
            sku,
        )
    }
    assert {code: ledger.get(code, (0, 0)) for code in stock} == stock
    assert set(ledger) <= set(stock)
    last = await db.fetchrow(
        "SELECT on_hand_after, reserved_after FROM stock_ledger WHERE sku = $1 ORDER BY id DESC LIMIT 1", sku
    )
    assert (last["on_hand_after"], last["reserved_after"]) == (
        item["stock_quantity"],
        item["reserved_quantity"],
    )
    held = {
        r["location"]: r["n"]
        for r in await db.fetch(
            "SELECT location, sum(quantity)::bigint AS n FROM reservations"
            " WHERE sku = $1 AND status = 'active' GROUP BY location",
            sku,
        )
    }
    assert {code: reserved for code, (_, reserved) in stock.items() if reserved} == held
