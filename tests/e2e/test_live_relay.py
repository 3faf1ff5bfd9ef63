"""The WebSocket relay (docs/live-protocol.md) against the real stack, with plain `websockets` clients:
who may connect, what closes a connection, snapshots and filters, recovery after a relay restart and after
the history was trimmed, gap filling in the relay's own feed, new epochs, slow consumers and two relays."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from pydantic import SecretStr
from redis.asyncio import Redis
from websockets.exceptions import InvalidStatus

from infra.live_redis import EPOCH_KEY, LiveRedis
from infra.settings import Settings
from tests.e2e.live_support import (
    close_code,
    connected,
    metric,
    next_frame,
    publish_fake,
    relay_process,
    subscribe,
    token,
    url_of,
)
from tests.e2e.support import new_sku, wait_for_status
from tests.processes import Process, start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live-relay-logs")


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    assert (await wait_for_status(edge, response.json()["command_id"]))["status"] == "applied"


# --- who may connect -------------------------------------------------------------------------------------


async def test_connections_without_a_valid_token_are_closed_with_1008(live_url: str, stack: Settings) -> None:
    other_secret = token(stack.model_copy(update={"jwt_secret": SecretStr("x" * 40)}))
    refused = {
        "garbage": json.dumps({"type": "connect", "token": "not.a.jwt"}),
        "other secret": json.dumps({"type": "connect", "token": other_secret}),
        "expired": json.dumps({"type": "connect", "token": token(stack, ttl=-10)}),
        "no roles": json.dumps({"type": "connect", "token": token(stack, roles=[])}),
        "subscribe first": json.dumps({"type": "subscribe", "channel": "inventory"}),
        "not json": "hello",
    }
    for case, first in refused.items():
        async with websockets.connect(live_url, open_timeout=10) as ws:
            await ws.send(first)
            assert await close_code(ws) == (1008, "unauthorized"), case

    async with websockets.connect(live_url, open_timeout=10) as ws:  # says nothing: closed after 5 s
        assert await close_code(ws, within=15) == (1008, "unauthorized")


async def test_wrong_origin_is_refused_before_the_upgrade(live_url: str, stack: Settings) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(live_url, origin="https://evil.example", open_timeout=10):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with connected(live_url, token(stack)) as ws:  # no Origin (not a browser): allowed
        assert (await subscribe(ws, "alerts"))["recovered"] is False


async def test_oversized_frames_close_with_1009(live_url: str, stack: Settings) -> None:
    big = json.dumps({"type": "subscribe", "channel": "inventory", "pad": "x" * stack.live_max_frame_bytes})
    async with websockets.connect(live_url, open_timeout=10) as ws:  # before connecting
        await ws.send(big)
        assert (await close_code(ws))[0] == 1009
    async with connected(live_url, token(stack)) as ws:
        await ws.send(big)
        assert (await close_code(ws))[0] == 1009


async def test_token_expiry_closes_the_socket_unless_refreshed(live_url: str, stack: Settings) -> None:
    short = token(stack, ttl=3)
    async with websockets.connect(live_url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "connect", "token": short}))
        hello = await next_frame(ws, "connected")
        assert hello["expires_at"].endswith("Z")
        assert await close_code(ws, within=10) == (1008, "token expired")

    async with connected(live_url, token(stack, ttl=3)) as ws:
        longer = token(stack, ttl=300)
        await ws.send(json.dumps({"type": "refresh", "token": longer}))
        assert (await next_frame(ws, "refreshed"))["expires_at"].endswith("Z")
        # The condition is the close the first token would have caused: it must not come before 4.5 s,
        # past that token's expiry, have gone by.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), 4.5)
        assert (await subscribe(ws, "alerts"))["type"] == "subscribed"

    async with connected(live_url, token(stack)) as ws:  # a token of someone else is no refresh
        await ws.send(json.dumps({"type": "refresh", "token": token(stack, subject="user:other")}))
        assert await close_code(ws) == (1008, "unauthorized")


async def test_bad_frames_get_errors_and_a_flood_is_closed(live_url: str, stack: Settings) -> None:
    async with connected(live_url, token(stack)) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "orders"}))
        assert (await next_frame(ws, "error"))["code"] == "bad_frame"
        await ws.send(json.dumps({"type": "unsubscribe", "channel": "prices"}))
        assert (await next_frame(ws, "error"))["code"] == "not_subscribed"
        for _ in range(int(stack.live_max_messages_per_s * 3) + 5):
            await ws.send('{"type":"pong"}')
        assert await close_code(ws) == (1008, "rate limited")


# --- snapshots, publications, filters --------------------------------------------------------------------


async def test_snapshot_then_filtered_publications(
    edge: httpx.AsyncClient, live_url: str, stack: Settings
) -> None:
    category = f"lamps-{uuid.uuid4().hex[:6]}"
    lamp, other = new_sku(), new_sku()
    await applied(edge, await edge.post("/v1/items", json={"sku": lamp, "name": "L", "category": category,
                                                           "initial_quantity": 4}))  # fmt: skip
    async with (
        connected(live_url, token(stack)) as everything,
        connected(live_url, token(stack)) as by_category,
        connected(live_url, token(stack)) as by_sku,
    ):
        full = await subscribe(everything, "inventory")
        rows = {row["sku"]: row for row in full["snapshot"]}
        item = (await edge.get(f"/v1/items/{lamp}")).json()
        assert rows[lamp]["on_hand"] == item["on_hand"] == 4
        assert rows[lamp]["version"] == item["version"]
        assert rows[lamp]["category"] == category
        in_category = await subscribe(by_category, "inventory", filter={"category": category})
        assert [row["sku"] for row in in_category["snapshot"]] == [lamp]
        one = await subscribe(by_sku, "inventory", filter={"skus": [other]})
        assert one["snapshot"] == []

        await applied(
            edge, await edge.post("/v1/items", json={"sku": other, "name": "O", "initial_quantity": 1})
        )
        await applied(edge, await edge.post(f"/v1/items/{lamp}/receipts", json={"quantity": 2}))

        pubs = [await next_frame(everything, "pub") for _ in range(2)]
        assert [p["event"]["sku"] for p in pubs] == [other, lamp]
        assert pubs[1]["offset"] == pubs[0]["offset"] + 1
        assert pubs[0]["offset"] > full["offset"]
        assert (await next_frame(by_category, "pub"))["event"]["sku"] == lamp
        assert (await next_frame(by_sku, "pub"))["event"]["sku"] == other
        # Each filtered client got exactly one: the other one's event never reached it.
        await applied(edge, await edge.post(f"/v1/items/{other}/receipts", json={"quantity": 1}))
        assert (await next_frame(by_sku, "pub"))["event"]["version"] == 2
        await applied(edge, await edge.post(f"/v1/items/{lamp}/receipts", json={"quantity": 1}))
        nxt = await next_frame(by_category, "pub")
        assert (nxt["event"]["sku"], nxt["event"]["on_hand"]) == (lamp, 7)


# --- recovery ---------------------------------------------------------------------------------------------


async def test_recovery_after_the_relay_is_killed(
    edge: httpx.AsyncClient, stack: Settings, logs: Path
) -> None:
    sku = new_sku()
    await applied(edge, await edge.post("/v1/items", json={"sku": sku, "name": "R", "initial_quantity": 1}))
    port_env = {}
    with relay_process(logs) as relay:
        port_env = {"INVMON_LIVE_PORT": str(relay.port)}
        async with connected(url_of(relay), token(stack)) as ws:
            position = await subscribe(ws, "inventory")
        relay.stop(signal.SIGKILL)
        for quantity in (1, 2, 3):  # applied while no relay runs
            await applied(edge, await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": quantity}))
    again = start("live_relay", relay.port, logs, env=port_env)
    try:
        await asyncio.to_thread(wait_ready, again)
        async with connected(url_of(again), token(stack)) as ws:
            recover = {"epoch": position["epoch"], "offset": position["offset"]}
            reply = await subscribe(ws, "inventory", recover=recover)
    finally:
        again.stop()
    assert reply["recovered"] is True
    assert "snapshot" not in reply
    offsets = [p["offset"] for p in reply["publications"]]
    assert offsets == list(range(position["offset"] + 1, reply["offset"] + 1))
    mine = [p["event"]["on_hand"] for p in reply["publications"] if p["event"]["sku"] == sku]
    assert mine == [2, 4, 7]


async def test_not_recovered_once_the_history_is_trimmed(live_url: str, stack: Settings) -> None:
    sku = new_sku()
    async with connected(live_url, token(stack)) as ws:
        old = await subscribe(ws, "prices")
    await publish_fake(stack, "prices", sku, 600, history=100)  # trims everything `old` would need
    async with connected(live_url, token(stack)) as ws:
        reply = await subscribe(ws, "prices", recover={"epoch": old["epoch"], "offset": old["offset"]})
        assert reply["recovered"] is False
        assert isinstance(reply["snapshot"], list)
        assert reply["offset"] >= old["offset"] + 600
        recent = reply["offset"] - 20  # still in the history
        again = await subscribe(ws, "prices", recover={"epoch": reply["epoch"], "offset": recent})
        assert again["recovered"] is True
        assert [p["offset"] for p in again["publications"]] == list(range(recent + 1, again["offset"] + 1))
        assert len(again["publications"]) >= 20
        stale = await subscribe(ws, "prices", recover={"epoch": "another-epoch", "offset": recent})
        assert stale["recovered"] is False


async def test_a_gap_in_the_relays_own_feed_is_filled_from_the_history(
    live_url: str, stack: Settings, pipeline: dict[str, Process]
) -> None:
    relay = pipeline["live_relay"]
    filled_before = await metric(relay, "invmon_relay_gap_filled_total")
    sku = new_sku()
    redis = Redis.from_url(stack.redis_url)
    try:
        async with connected(live_url, token(stack)) as ws:
            start_at = (await subscribe(ws, "alerts"))["offset"]
            # The relay is stopped while its pub/sub connection is dropped and the events are published, so
            # it cannot subscribe again in between (redis-py reconnects a pub/sub connection at once, and a
            # race against that was this test's flake): those publications never reach it by pub/sub.
            relay.popen.send_signal(signal.SIGSTOP)
            try:
                await redis.client_kill_filter(_type="pubsub")
                last = await publish_fake(stack, "alerts", sku, 30)
            finally:
                relay.popen.send_signal(signal.SIGCONT)
            offsets = [(await next_frame(ws, "pub"))["offset"] for _ in range(last - start_at)]
    finally:
        await redis.aclose()
    assert offsets == list(range(start_at + 1, last + 1))
    assert await metric(relay, "invmon_relay_gap_filled_total") >= filled_before + 1


async def test_a_new_epoch_resets_subscribers(live_url: str, stack: Settings) -> None:
    redis = Redis.from_url(stack.redis_url)
    try:
        async with connected(live_url, token(stack)) as ws:
            old = await subscribe(ws, "alerts")
            await redis.delete(EPOCH_KEY)  # what a Redis that lost its data looks like
            await publish_fake(stack, "alerts", new_sku(), 1)
            assert (await next_frame(ws, "reset"))["channel"] == "alerts"
            reply = await subscribe(ws, "alerts", recover={"epoch": old["epoch"], "offset": old["offset"]})
    finally:
        await redis.aclose()
    assert reply["recovered"] is False
    assert reply["epoch"] != old["epoch"]


# --- fan-out limits and several relays --------------------------------------------------------------------


async def test_slow_consumer_is_closed_while_a_fast_one_keeps_receiving(stack: Settings, logs: Path) -> None:
    sku, count = new_sku(), 1500
    with relay_process(logs, INVMON_LIVE_QUEUE_SIZE="100") as relay:
        async with (
            connected(url_of(relay), token(stack), max_queue=1) as slow,
            connected(url_of(relay), token(stack), max_size=None) as fast,
        ):
            await subscribe(slow, "prices", filter={"skus": [sku]})
            start_at = (await subscribe(fast, "prices", filter={"skus": [sku]}))["offset"]

            async def once_closed() -> tuple[int | None, str]:
                # The slow client reads only once the relay has closed it: its backlog, then the close
                # frame (read within the relay's close timeout, or the relay aborts the socket).
                while await metric(relay, "invmon_relay_closed_total") < 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)  # poll interval while waiting for the relay to close it
                return await close_code(slow, within=30)

            slow_closed = asyncio.create_task(once_closed())
            got: list[int] = []
            for _ in range(0, count, 10):  # the fast client reads each step before the next is published
                await publish_fake(stack, "prices", sku, 10, pad=16000)
                got += [(await next_frame(fast, "pub", within=60))["offset"] for _ in range(10)]
            assert (await asyncio.wait_for(slow_closed, 60))[0] == 4008
    assert got == sorted(got)
    assert len(set(got)) == count
    assert got[0] > start_at


async def test_two_relays_serve_the_same_sequence_with_their_own_limits(
    live_url: str, stack: Settings, logs: Path
) -> None:
    sku = new_sku()
    shop = "https://dash.example"
    with relay_process(
        logs, INVMON_CORS_ORIGINS=json.dumps([shop]), INVMON_LIVE_MAX_CONNECTIONS="2"
    ) as relay:
        async with (
            connected(live_url, token(stack)) as first,
            connected(url_of(relay), token(stack), origin=shop) as second,
        ):
            a = await subscribe(first, "alerts", filter={"skus": [sku]})
            b = await subscribe(second, "alerts", filter={"skus": [sku]})
            assert a["epoch"] == b["epoch"]
            async with websockets.connect(url_of(relay), open_timeout=10) as third:  # the second's limit
                await third.send(json.dumps({"type": "connect", "token": token(stack)}))
                await next_frame(third, "connected")
                async with websockets.connect(url_of(relay), open_timeout=10) as fourth:
                    assert await close_code(fourth) == (1013, "too many connections")
            await publish_fake(stack, "alerts", sku, 5)
            seen_a = [await next_frame(first, "pub") for _ in range(5)]
            seen_b = [await next_frame(second, "pub") for _ in range(5)]
    assert [(p["offset"], p["event"]) for p in seen_a] == [(p["offset"], p["event"]) for p in seen_b]
    assert [p["event"]["version"] for p in seen_a] == [1, 2, 3, 4, 5]


# --- coalescing -------------------------------------------------------------------------------------------


async def coalesced_frames(ws: Any, until: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """`pub` frames until each (SKU, version) in `until` was seen."""
    frames: list[dict[str, Any]] = []
    while until - {(f["event"]["sku"], f["event"]["version"]) for f in frames}:
        frames.append(await next_frame(ws, "pub"))
    return frames


async def settle(stack: Settings, sku: str, *clients: tuple[Any, dict[str, Any]]) -> None:
    """Publish on `inventory` until every client gets a publication of `sku` as it comes. The first may meet
    a new epoch (an earlier test made one): the relay then rightly sends `reset` instead, and the client
    subscribes again with the same fields, as the protocol asks."""
    for _ in range(3):
        await publish_fake(stack, "inventory", sku, 1)
        reset = False
        for ws, fields in clients:
            if (await next_frame(ws, ("pub", "reset")))["type"] == "reset":
                reset = True
                await subscribe(ws, "inventory", **fields)
        if not reset:
            return
    raise AssertionError("the relay kept resetting the channel")


async def test_a_coalescing_subscriber_gets_the_newest_stock_of_a_hot_sku(
    live_url: str, stack: Settings, pipeline: dict[str, Process]
) -> None:
    hot, cold, warm = new_sku(), new_sku(), new_sku()
    skus = {"skus": [hot, cold, warm]}
    coalesced_before = await metric(pipeline["live_relay"], "invmon_relay_coalesced_total")
    async with connected(live_url, token(stack)) as plain, connected(live_url, token(stack)) as coalescing:
        fields: dict[str, Any] = {"filter": skus}
        await subscribe(plain, "inventory", **fields)
        await subscribe(coalescing, "inventory", **fields, coalesce_ms=300)
        await settle(stack, warm, (plain, fields), (coalescing, {**fields, "coalesce_ms": 300}))
        last_hot = await publish_fake(stack, "inventory", hot, 200)
        last_cold = await publish_fake(stack, "inventory", cold, 1)

        every = [await next_frame(plain, "pub") for _ in range(201)]
        assert [f["event"]["version"] for f in every if f["event"]["sku"] == hot] == list(range(1, 201))
        frames = await coalesced_frames(coalescing, {(hot, 200), (cold, 1)})
        # 200 publications of the hot SKU within a few ms: one window, so (nearly) one frame, the newest.
        assert len(frames) < 10, [(f["event"]["sku"], f["offset"]) for f in frames]
        offsets = [f["offset"] for f in frames]
        assert offsets == sorted(set(offsets))
        assert offsets[-1] == last_cold
        assert last_hot in offsets
    assert await metric(pipeline["live_relay"], "invmon_relay_coalesced_total") >= coalesced_before + 190


async def test_coalescing_lets_other_events_through_in_order_and_only_on_inventory(
    live_url: str, stack: Settings
) -> None:
    hot = new_sku()
    async with connected(live_url, token(stack)) as ws:
        refused = json.dumps({"type": "subscribe", "channel": "alerts", "coalesce_ms": 300})
        await ws.send(refused)
        assert (await next_frame(ws, "error"))["code"] == "bad_frame"
        await ws.send(json.dumps({"type": "subscribe", "channel": "inventory", "coalesce_ms": 10}))
        assert (await next_frame(ws, "error"))["code"] == "bad_frame"  # below the 50 ms minimum

        await subscribe(ws, "inventory", filter={"skus": [hot]}, coalesce_ms=60_000)
        await publish_fake(stack, "inventory", hot, 20)
        redis = Redis.from_url(stack.redis_url)
        try:
            details = json.dumps({"sku": hot, "type": "item_details_updated", "changes": {"name": "N"},
                                  "version": 21, "event_id": str(uuid.uuid4())})  # fmt: skip
            last = await LiveRedis(redis).publish(
                "inventory", [(hot, "item_details_updated", details)], history=stack.live_history_size
            )
        finally:
            await redis.aclose()
        # The window is a minute long: the held stock_changed leaves now, before the other event.
        first, second = await next_frame(ws, "pub"), await next_frame(ws, "pub")
        assert (first["event"]["type"], first["event"]["version"]) == ("stock_changed", 20)
        assert (second["event"]["type"], second["offset"]) == ("item_details_updated", last)
