"""Channel snapshots from PostgreSQL, as the protocol's row models."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import RowMapping

from api_edge.views import location_views
from contracts.live import AlertRow, Channel, Filter, ItemRow, PriceRow
from contracts.locations import LocationStockView
from contracts.money import margin_pct
from db import live_reads, read_repo
from db.read_engine import ReadEngine

Rows = list[ItemRow] | list[PriceRow] | list[AlertRow]


def price_row(row: RowMapping) -> PriceRow:
    price = row["effective_price"]
    return PriceRow(
        sku=row["sku"],
        currency=row["currency"],
        effective_price=price,
        selling_price=row["selling_price"],
        discount_price=row["discount_price"],
        cost_price=row["cost_price"],
        margin_pct=margin_pct(price, row["cost_price"]) if price is not None else None,
        margin_state=row["margin_state"],
        version=row["version"],
    )


def item_row(row: RowMapping, prices: list[PriceRow], locations: list[LocationStockView]) -> ItemRow:
    on_hand, reserved = row["stock_quantity"], row["reserved_quantity"]
    return ItemRow(
        sku=row["sku"],
        name=row["name"],
        category=row["category"],
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        min_stock_level=row["min_stock_level"],
        max_stock_level=row["max_stock_level"],
        alert_state=row["alert_state"],
        is_active=row["is_active"],
        version=row["version"],
        prices=prices,
        locations=locations,
    )


async def snapshot(
    reads: ReadEngine, channel: Channel, wanted: Filter | None, limit: int
) -> tuple[Rows, bool]:
    """The channel's rows (after the filter) and whether the row limit cut them short. From the read
    replica once it has replayed what the primary had committed when this began (`connect_caught_up`),
    so the rows are never older than the live offset the subscriber was given."""
    skus = wanted.skus if wanted else None
    category = wanted.category if wanted else None
    places = wanted.locations if wanted else None
    async with reads.connect_caught_up() as conn:
        if channel == "inventory":
            # One snapshot of the database for the items and their stock per location: each location's
            # numbers are exactly those of the row's `version` (the dashboard orders events by it).
            # The catch-up check may have begun a transaction: end it, the isolation level is per transaction.
            await conn.commit()
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            items = await live_reads.items(conn, skus, category, limit + 1, places)
            by_sku: defaultdict[str, list[PriceRow]] = defaultdict(list)
            found = [r["sku"] for r in items[:limit]]
            if found:
                for row in await live_reads.prices(conn, found, None, len(found) * 50):
                    by_sku[row["sku"]].append(price_row(row))
            at = await read_repo.location_stock(conn, found)
            made = [
                item_row(r, by_sku[r["sku"]], location_views(at[r["sku"]], places)) for r in items[:limit]
            ]
            return made, len(items) > limit
        if channel == "prices":
            rows = await live_reads.prices(conn, skus, category, limit + 1)
            return [price_row(r) for r in rows[:limit]], len(rows) > limit
        stock = await live_reads.stock_alerts(conn, skus, category, limit + 1)
        margin = await live_reads.margin_alerts(conn, skus, category, limit + 1)
    alerts = [
        AlertRow(kind="stock", sku=r["sku"], state=r["alert_state"],
                 available=r["stock_quantity"] - r["reserved_quantity"], updated_at=r["updated_at"])
        for r in stock
    ] + [
        AlertRow(kind="margin", sku=r["sku"], state="below", currency=r["currency"],
                 margin_pct=margin_pct(r["effective_price"], r["cost_price"])
                 if r["effective_price"] is not None else None,
                 updated_at=r["updated_at"])
        for r in margin
    ]  # fmt: skip
    return alerts[:limit], len(alerts) > limit


@dataclass(slots=True)
class _Round:
    channel: Channel
    wanted: Filter | None
    running: asyncio.Future[tuple[bytes, bool]] | None = None
    following: asyncio.Future[tuple[bytes, bool]] | None = None


class Snapshots:
    """Snapshot reads shared by concurrent subscribes of the same channel and filter (a relay restart
    brings every client back at once). A subscriber may only use a read that began after it read the
    channel position, so one that arrives while a read runs waits for the next one, which starts when the
    running one ends: a burst of any size costs two reads, and the rows are encoded once per read."""

    def __init__(self, reads: ReadEngine, limit: int) -> None:
        self._reads = reads
        self._limit = limit
        self._rounds: dict[tuple[str, str], _Round] = {}

    async def get(self, channel: Channel, wanted: Filter | None) -> tuple[bytes, bool]:
        """The rows as a JSON array, and whether the limit cut them short."""
        key = (channel, wanted.model_dump_json() if wanted else "")
        state = self._rounds.get(key)
        if state is None:
            state = self._rounds[key] = _Round(channel, wanted)
        if state.running is None:
            state.running = self._start(key, state)
            return await asyncio.shield(state.running)
        if state.following is None:
            state.following = asyncio.get_running_loop().create_future()
        return await asyncio.shield(state.following)

    def _start(self, key: tuple[str, str], state: _Round) -> asyncio.Future[tuple[bytes, bool]]:
        task = asyncio.ensure_future(self._read(state.channel, state.wanted))
        task.add_done_callback(lambda _: self._next(key, state))
        return task

    def _next(self, key: tuple[str, str], state: _Round) -> None:
        state.running = None
        if state.following is None:
            del self._rounds[key]
            return
        waiting, state.following = state.following, None
        state.running = self._start(key, state)
        state.running.add_done_callback(lambda done: _settle(waiting, done))

    async def _read(self, channel: Channel, wanted: Filter | None) -> tuple[bytes, bool]:
        rows, truncated = await snapshot(self._reads, channel, wanted, self._limit)
        return encode_rows(rows, truncated)


# WebSocket clients commonly refuse frames over 1 MiB by default (the `websockets` library's max_size): the
# rows of one `subscribed` frame stay below that, whatever the row limit, with room for the frame around them.
SNAPSHOT_MAX_BYTES = 1_000_000


def encode_rows(rows: Rows, truncated: bool, budget: int = SNAPSHOT_MAX_BYTES) -> tuple[bytes, bool]:
    """The rows as a JSON array, cut (and `truncated`) where the next row would pass `budget` bytes."""
    encoded: list[bytes] = []
    size = 2
    for row in rows:
        item = row.model_dump_json().encode()
        size += len(item) + 1
        if size > budget:
            return b"[" + b",".join(encoded) + b"]", True
        encoded.append(item)
    return b"[" + b",".join(encoded) + b"]", truncated


def _settle(waiting: asyncio.Future[tuple[bytes, bool]], done: asyncio.Future[tuple[bytes, bool]]) -> None:
    if waiting.done():
        return
    if done.cancelled():
        waiting.cancel()
    elif (error := done.exception()) is not None:
        waiting.set_exception(error)
    else:
        waiting.set_result(done.result())
