"""The relay's Redis feed: one pattern subscription on the live channels, checked for contiguous offsets.

A gap (a missed message, or everything published while the subscription was down) is filled from the
channel's history before anything newer is passed on; when the history no longer holds it, or Redis
started a new epoch, the channel's subscribers get `reset`. Nothing is ever skipped silently."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

import structlog
from prometheus_client import Counter, Gauge
from redis.asyncio.client import PubSub
from sqlalchemy.ext.asyncio import AsyncEngine

from api_edge.relay.hub import Hub
from api_edge.relay.protocol import Cursor, Step, event_locations, fills_gap
from contracts.live import CHANNELS
from db import live_reads
from infra.live_redis import PUB_PATTERN, LiveMessage, LiveRedis, channel_of, parse_message

log = structlog.get_logger("invmon.relay.feed")

RECEIVED = Counter(
    "invmon_relay_publications_total", "Publications the relay passed on, by channel.", ["channel"]
)
FILLED = Counter("invmon_relay_gap_filled_total", "Publications recovered from the history to fill a gap.")
UNFILLABLE = Counter("invmon_relay_gap_lost_total", "Gaps the history could not fill (a reset followed).")
CONNECTED = Gauge("invmon_relay_redis_subscribed", "1 while the relay's Redis subscription is up.")

AUDIT_CATCH_UPS = Counter(
    "invmon_relay_audit_catch_ups_total", "Channels caught up from the history after a quiet second."
)

CATEGORY_CACHE_SIZE = 100_000
QUIET_CHECK_S = 1.0


class Categories:
    """SKU -> category for category filters. Kept current from the events that set it; an unknown SKU
    is read from PostgreSQL once. Bounded: cleared when full (it refills on demand)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._known: dict[str, str | None] = {}

    def learn(self, message: LiveMessage) -> bool:
        """Take the category from an event that sets it; True if the event moves the item."""
        if message.type == "item_registered":
            self._put(message.sku, json.loads(message.payload).get("category"))
        elif message.type == "item_details_updated":
            changes = json.loads(message.payload).get("changes", {})
            if "category" in changes:
                self._put(message.sku, changes["category"])
                return True
        return False

    def get(self, sku: str) -> str | None:
        return self._known.get(sku)

    async def load(self, skus: Iterable[str]) -> None:
        missing = {sku for sku in skus if sku not in self._known}
        if missing:
            async with self._engine.connect() as conn:
                found = await live_reads.categories(conn, missing)
            for sku in missing:
                self._put(sku, found.get(sku))

    def _put(self, sku: str, category: object) -> None:
        if len(self._known) >= CATEGORY_CACHE_SIZE:
            self._known.clear()
        self._known[sku] = category if isinstance(category, str) else None


class Feed:
    def __init__(self, live: LiveRedis, hub: Hub, categories: Categories) -> None:
        self._live = live
        self._hub = hub
        self.categories = categories
        self._cursors: dict[str, Cursor] = {channel: Cursor() for channel in CHANNELS}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with self._live.redis.pubsub() as pubsub:
                    await pubsub.psubscribe(PUB_PATTERN)
                    for channel in CHANNELS:
                        await self._catch_up(channel)
                    self.ready.set()
                    CONNECTED.set(1)
                    log.info("relay_feed_subscribed")
                    await self._listen(pubsub)
            except Exception as error:  # Redis lost, or a category lookup failed: resume from the cursor
                self.ready.clear()
                CONNECTED.set(0)
                log.warning("relay_feed_lost", error=repr(error))
                await asyncio.sleep(0.5)

    async def _listen(self, pubsub: PubSub) -> None:
        # redis-py may reconnect a pub/sub connection by itself and then hear nothing (seen when Redis
        # restarts): after a quiet second the feed compares its cursors with Redis and catches up from the
        # history; quiet and behind twice in a row means the subscription is dead, so it starts afresh.
        behind = 0
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=QUIET_CHECK_S)
            if message is None:
                behind = behind + 1 if await self._audit() else 0
                if behind >= 2:
                    raise ConnectionError("pub/sub is silent while the channels move on")
                continue
            behind = 0
            if message["type"] == "pmessage":
                name = channel_of(_text(message["channel"]))
                await self._on(name, parse_message(message["data"]))

    async def _audit(self) -> bool:
        """Catch up every channel that Redis has moved past the cursor; whether any had."""
        behind = False
        for channel in CHANNELS:
            cursor = self._cursors[channel]
            epoch, offset = await self._live.position(channel)
            if epoch != cursor.epoch or offset > cursor.offset:
                behind = True
                AUDIT_CATCH_UPS.inc()
                await self._catch_up(channel)
        return behind

    async def _catch_up(self, channel: str) -> None:
        """After (re)subscribing: whatever was published while we were not listening."""
        cursor = self._cursors[channel]
        epoch, offset = await self._live.position(channel)
        if cursor.epoch is None:
            cursor.advance(epoch, offset)  # a fresh relay: its clients start from their own subscribe
        elif epoch != cursor.epoch:
            self._lost(channel, cursor, epoch, offset)
        elif offset > cursor.offset:
            await self._fill(channel, cursor, offset + 1)

    async def _on(self, channel: str, message: LiveMessage) -> None:
        cursor = self._cursors.get(channel)
        if cursor is None:
            return  # a channel this relay version does not serve
        step = cursor.step(message.epoch, message.offset)
        if step is Step.DUPLICATE:
            return
        if step is Step.NEW_EPOCH:
            self._lost(channel, cursor, message.epoch, message.offset)
            return
        if step is Step.GAP and not await self._fill(channel, cursor, message.offset):
            cursor.advance(message.epoch, message.offset)  # its subscribers were reset; new ones start here
            return
        await self._pass(channel, message)
        cursor.advance(message.epoch, message.offset)

    async def _fill(self, channel: str, cursor: Cursor, upto: int) -> bool:
        """Pass on the history between the cursor and `upto` (exclusive); reset if it is incomplete."""
        entries = await self._live.history(channel, cursor.offset, count=upto - cursor.offset - 1)
        entries = [e for e in entries if e.offset < upto]
        epoch = cursor.epoch
        if not fills_gap(cursor.offset, upto, [e.offset for e in entries]) or any(
            e.epoch != epoch for e in entries
        ):
            log.warning("relay_gap_lost", channel=channel, after=cursor.offset, upto=upto)
            UNFILLABLE.inc()
            self._lost(channel, cursor, epoch or "", upto - 1)
            return False
        for entry in entries:
            await self._pass(channel, entry)
            cursor.advance(entry.epoch, entry.offset)
        FILLED.inc(len(entries))
        return True

    def _lost(self, channel: str, cursor: Cursor, epoch: str, offset: int) -> None:
        self._hub.reset(channel)
        cursor.advance(epoch, offset)

    async def _pass(self, channel: str, message: LiveMessage) -> None:
        moved = self.categories.learn(message)
        category = None
        if self._hub.wants_categories(channel):
            await self.categories.load([message.sku])
            category = self.categories.get(message.sku)
        # After the await above: a subscriber added meanwhile counts in `wants_locations`.
        places = event_locations(message.payload) if self._hub.wants_locations(channel) else ()
        self._hub.dispatch(channel, message, category, moved, places)
        RECEIVED.labels(channel).inc()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
