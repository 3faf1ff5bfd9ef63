"""One WebSocket connection: connect (token), then subscribe / unsubscribe / refresh / pong frames.

Every frame to the client goes through its `Client` (hub.py), so replies and publications keep their
order. A subscribe registers first and buffers live publications while it reads the channel position and
then the history or the snapshot: the reply is consistent with its `offset`, and nothing published after
that offset can slip between the reply and the live feed."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from api_edge import principals
from api_edge.auth import Principal, decode_access_token
from api_edge.problems import Problem
from api_edge.relay.feed import Feed
from api_edge.relay.hub import Client, Hub, Sub, pub_frame
from api_edge.relay.protocol import Match, TokenBucket, replay_from, replayable
from api_edge.relay.snapshot import Snapshots
from contracts.live import (
    CLIENT_FRAME,
    COALESCED,
    Connect,
    Connected,
    Error,
    ErrorCode,
    Pong,
    Refresh,
    Refreshed,
    Subscribe,
    Unsubscribe,
)
from db.read_engine import ReadEngine
from infra.live_redis import LiveMessage, LiveRedis
from infra.proxies import TrustedProxies
from infra.settings import Settings

log = structlog.get_logger("invmon.relay.session")

FEED_WAIT_S = 5.0


@dataclass(slots=True)
class Relay:
    """What every session of one relay process shares."""

    settings: Settings
    hub: Hub
    feed: Feed
    live: LiveRedis
    engine: AsyncEngine  # the primary
    snapshots: Snapshots
    reads: ReadEngine
    proxies: TrustedProxies


def client_address(relay: Relay, ws: ServerConnection) -> str:
    peer = ws.remote_address[0] if ws.remote_address else "unknown"
    forwarded = ws.request.headers.get_all("X-Forwarded-For") if ws.request is not None else []
    return relay.proxies.client(str(peer), forwarded)


def close_deactivated(hub: Hub) -> None:
    """Close the sockets of principals deactivated since they connected (called after each reload)."""
    for client in list(hub.clients):
        if client.subject and not principals.status.active(client.subject, client.auth_time):
            client.close(1008, "unauthorized")


def _token(settings: Settings, token: str) -> tuple[Principal, int] | None:
    try:
        principal, exp = decode_access_token(settings, token)
    except Problem:
        return None
    return (principal, exp) if principal.has("viewer") else None


class Session:
    def __init__(self, relay: Relay, ws: ServerConnection) -> None:
        self.relay = relay
        self.ws = ws
        self.client = Client(ws, uuid.uuid4().hex, relay.settings.live_queue_size)
        self.subject = ""
        self._expiry: asyncio.TimerHandle | None = None
        rate = relay.settings.live_max_messages_per_s
        self._bucket = TokenBucket(rate, 2 * rate, time.monotonic())

    async def run(self) -> None:
        hub = self.relay.hub
        hub.connections += 1
        try:
            if hub.connections > self.relay.settings.live_max_connections:
                self.client.close(1013, "too many connections")
            else:
                await self._run()
        finally:
            hub.connections -= 1
            await self.client.finish()

    async def _run(self) -> None:
        hub = self.relay.hub
        # Until `connect` succeeds a socket costs the relay and proves nothing: few per address, briefly.
        address = client_address(self.relay, self.ws)
        if hub.unauthenticated[address] >= self.relay.settings.live_max_unauthenticated_per_ip:
            self.client.close(1008, "too many unauthenticated connections")
            return
        hub.unauthenticated[address] += 1
        try:
            connected = await self._connect()
        finally:
            hub.unauthenticated[address] -= 1
            if not hub.unauthenticated[address]:
                del hub.unauthenticated[address]
        if not connected:
            return
        hub.join(self.client)
        writer = asyncio.create_task(self.client.write_loop())
        try:
            async for data in self.ws:
                self.client.last_seen = now = time.monotonic()
                if not self._bucket.allow(now):
                    self.client.close(1008, "rate limited")
                    break
                await self._handle(data)
                if self.client.closed:
                    break
        except ConnectionClosed:
            pass
        finally:
            hub.leave(self.client)
            if self._expiry is not None:
                self._expiry.cancel()
            writer.cancel()

    async def _connect(self) -> bool:
        try:
            data = await asyncio.wait_for(self.ws.recv(), self.relay.settings.live_login_timeout_s)
        except TimeoutError:
            self.client.close(1008, "unauthorized")
            return False
        except ConnectionClosed:
            return False
        self._bucket.allow(time.monotonic())
        try:
            frame = CLIENT_FRAME.validate_json(data)
        except ValidationError:
            frame = None
        found = _token(self.relay.settings, frame.token) if isinstance(frame, Connect) else None
        if found is None:
            self.client.close(1008, "unauthorized")
            return False
        principal, exp = found
        self.subject = self.client.subject = principal.subject
        self.client.auth_time = principal.auth_time
        self._expire_at(exp)
        reply = Connected(
            client=self.client.id,
            expires_at=datetime.fromtimestamp(exp, UTC),
            ping_interval_s=self.relay.settings.live_ping_interval_s,
        )
        self.client.send(reply.model_dump_json().encode())
        log.info("relay_connected", client=self.client.id, subject=self.subject)
        return True

    def _expire_at(self, exp: int) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, exp - time.time())
        self._expiry = loop.call_at(loop.time() + delay, self.client.close, 1008, "token expired")

    def _error(self, code: ErrorCode, message: str) -> None:
        self.client.send(Error(code=code, message=message[:500]).model_dump_json().encode())

    async def _handle(self, data: str | bytes) -> None:
        try:
            frame = CLIENT_FRAME.validate_json(data)
        except ValidationError as error:
            self._error("bad_frame", "; ".join(e["msg"] for e in error.errors()[:3]))
            return
        if isinstance(frame, Subscribe):
            await self._subscribe(frame)
        elif isinstance(frame, Unsubscribe):
            sub = self.client.subs.get(frame.channel)
            if sub is None:
                self._error("not_subscribed", f"not subscribed to {frame.channel}")
            else:
                self.relay.hub.remove(sub)
        elif isinstance(frame, Refresh):
            self._refresh(frame)
        elif isinstance(frame, Connect):
            self._error("bad_frame", "already connected")
        elif isinstance(frame, Pong):
            pass

    def _refresh(self, frame: Refresh) -> None:
        found = _token(self.relay.settings, frame.token)
        if found is None or found[0].subject != self.subject:
            self.client.close(1008, "unauthorized")
            return
        self.client.auth_time = found[0].auth_time
        self._expire_at(found[1])
        reply = Refreshed(expires_at=datetime.fromtimestamp(found[1], UTC))
        self.client.send(reply.model_dump_json().encode())

    async def _subscribe(self, frame: Subscribe) -> None:
        relay, channel = self.relay, frame.channel
        started = time.monotonic()
        try:
            await asyncio.wait_for(relay.feed.ready.wait(), FEED_WAIT_S)
        except TimeoutError:
            self._error("unavailable", "the relay has no Redis feed right now; retry")
            return
        if frame.coalesce_ms is not None and channel != COALESCED[0]:
            self._error("bad_frame", f"coalesce_ms applies to the {COALESCED[0]} channel only")
            return
        coalesce_s = frame.coalesce_ms / 1000 if frame.coalesce_ms is not None else None
        sub = Sub(self.client, channel, Match.of(frame.filter), coalesce_s=coalesce_s)
        relay.hub.add(sub)
        try:
            reply, offset, recovered = await self._reply(frame, sub)
        except Exception as error:  # Redis or PostgreSQL failed: the client may retry
            log.warning("relay_subscribe_failed", client=self.client.id, error=repr(error))
            relay.hub.remove(sub)
            self._error("unavailable", f"subscribe failed: {type(error).__name__}; retry")
            return
        self.client.send(reply)
        self._flush(sub, offset)
        log.info(
            "relay_subscribed",
            client=self.client.id,
            channel=channel,
            recovered=recovered,
            wanted=frame.recover.model_dump() if frame.recover else None,
            offset=offset,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _reply(self, frame: Subscribe, sub: Sub) -> tuple[bytes, int, bool]:
        """The `subscribed` frame, the offset it is consistent with, and whether it recovered."""
        relay, channel = self.relay, frame.channel
        epoch, offset = await relay.live.position(channel)
        after = replay_from(frame.recover, epoch, offset)
        if after is not None:
            entries = await relay.live.history(channel, after)
            same_epoch = all(e.epoch == epoch for e in entries)
            if same_epoch and replayable(after, offset, [e.offset for e in entries]):
                kept = await self._filtered(sub, entries)
                last = entries[-1].offset if entries else after
                return recovered_frame(channel, epoch, last, kept), last, True
        rows, truncated = await relay.snapshots.get(channel, frame.filter)
        reply = (
            (
                f'{{"type":"subscribed","channel":"{channel}","epoch":"{epoch}","offset":{offset},'
                f'"recovered":false,"snapshot":'
            ).encode()
            + rows
            + (b',"truncated":true}' if truncated else b',"truncated":false}')
        )
        return reply, offset, False

    async def _filtered(self, sub: Sub, entries: list[LiveMessage]) -> list[LiveMessage]:
        if sub.match.everything:
            return entries
        categories = self.relay.feed.categories
        if sub.match.category is not None:
            await categories.load(e.sku for e in entries)
        return [e for e in entries if sub.match.accepts(e.sku, categories.get(e.sku), _moves(e))]

    def _flush(self, sub: Sub, offset: int) -> None:
        """Send what arrived while the reply was prepared, past its offset; then go live."""
        pending, sub.pending, sub.after = sub.pending or [], None, offset
        for message, category, moved in pending:
            if message.offset > offset and (
                sub.match.everything or sub.match.accepts(message.sku, category, moved)
            ):
                sub.offer(message, pub_frame(sub.channel, message))
        if sub.was_reset:
            self.relay.hub.remove(sub)
            self.client.send(f'{{"type":"reset","channel":"{sub.channel}"}}'.encode())


def _moves(message: LiveMessage) -> bool:
    # A history entry has no previous category to compare with: any category change counts as a move.
    return message.type == "item_details_updated" and '"category"' in message.payload


def recovered_frame(channel: str, epoch: str, offset: int, publications: list[LiveMessage]) -> bytes:
    """A `subscribed` frame with recovered publications (contracts.live.Subscribed), built by hand so the
    event JSON of each is passed on as it is: a recovery of thousands of events costs no re-encoding."""
    pubs = ",".join(f'{{"offset":{m.offset},"event":{m.payload}}}' for m in publications)
    return (
        f'{{"type":"subscribed","channel":"{channel}","epoch":"{epoch}","offset":{offset},'
        f'"recovered":true,"publications":[{pubs}]}}'
    ).encode()
