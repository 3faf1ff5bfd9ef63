"""Fan-out: subscriptions per channel, and per client a bounded queue in front of its socket.

A frame goes straight into the socket's write buffer while that buffer is small and nothing is queued:
a publication is encoded once as a complete WebSocket frame (server frames are never masked and the relay
negotiates no extension, so the bytes are the same for every client) and those bytes are written to every
such socket, the only per-client cost of a fan-out. Otherwise it waits in the client's queue,
which a writer task drains at the client's pace. A full queue closes the client with 4008: a slow client
never holds up the others, and never silently misses a frame."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter as Tally
from collections import deque
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter, Gauge
from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from api_edge.relay.protocol import Match
from contracts.live import CHANNELS, COALESCED
from infra.live_redis import LiveMessage

log = structlog.get_logger("invmon.relay.hub")

CLIENTS = Gauge("invmon_relay_clients", "Connected WebSocket clients of this relay.")
SUBSCRIPTIONS = Gauge("invmon_relay_subscriptions", "Live subscriptions by channel.", ["channel"])
FRAMES = Counter("invmon_relay_frames_total", "Frames handed to client sockets.")
QUEUED = Counter("invmon_relay_frames_queued_total", "Frames that waited in a client queue.")
CLOSED = Counter("invmon_relay_closed_total", "Connections the relay closed, by close code.", ["code"])
RESETS = Counter("invmon_relay_resets_total", "Reset frames sent, by channel.", ["channel"])
COALESCED_PUBS = Counter(
    "invmon_relay_coalesced_total",
    "Publications not sent to a coalescing subscriber: a newer one replaced them.",
)

# Above this many bytes waiting in a socket's write buffer, frames go through the client's queue instead.
WRITE_HIGH_WATER = 64 * 1024


def wire(frame: bytes) -> bytes:
    """A text message as the bytes of one unmasked WebSocket frame."""
    return Frame(Opcode.TEXT, frame).serialize(mask=False)


def pub_frame(channel: str, message: LiveMessage) -> bytes:
    # Built by hand so the event JSON is passed on as the outbox wrote it, never re-encoded.
    return (
        f'{{"type":"pub","channel":"{channel}","epoch":"{message.epoch}",'
        f'"offset":{message.offset},"event":{message.payload}}}'
    ).encode()


class Client:
    def __init__(self, ws: ServerConnection, client_id: str, queue_size: int) -> None:
        self.ws = ws
        self.id = client_id
        self.subject = ""  # the principal, once `connect` succeeded
        self.auth_time = 0  # when it logged in (a deactivation after that closes the socket)
        self.subs: dict[str, Sub] = {}
        self.closed = False
        self.last_seen = time.monotonic()  # any frame from the client counts as a pong
        self.close_code: int | None = None
        self._queue: deque[bytes] = deque()
        self._queue_size = queue_size
        self._sending = False
        self._wake = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None

    def writable(self) -> bool:
        return (
            not self._queue
            and not self._sending
            and not self.closed
            and self.ws.protocol.state is State.OPEN
            and self.ws.transport.get_write_buffer_size() < WRITE_HIGH_WATER
        )

    def send(self, frame: bytes) -> None:
        if self.writable():
            self.ws.transport.write(wire(frame))
            FRAMES.inc()
        else:
            self.enqueue(frame)

    def enqueue(self, frame: bytes) -> None:
        if self.closed:
            return
        if len(self._queue) >= self._queue_size:
            self.close(4008, "slow consumer")
            return
        self._queue.append(frame)
        QUEUED.inc()
        self._wake.set()

    async def write_loop(self) -> None:
        """Drains the queue at the socket's pace (`send` waits while the write buffer is full)."""
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and not self.closed:
                frame = self._queue.popleft()
                self._sending = True
                try:
                    await self.ws.send(frame, text=True)
                finally:
                    self._sending = False
                FRAMES.inc()

    def close(self, code: int, reason: str) -> None:
        """Close from anywhere without waiting; the queue is dropped (the client must recover anyway)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._queue.clear()
        self._wake.set()
        CLOSED.labels(str(code)).inc()
        log.info("relay_close", client=self.id, code=code, reason=reason)
        self._closing = asyncio.create_task(self.ws.close(code, reason))

    async def finish(self) -> None:
        """Let a close begun by `close` complete: the handler's return would otherwise close with 1000."""
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await self._closing


# What the feed learnt about a publication: the item's category, whether the event moves the item to
# another one, and the locations it names (api_edge.relay.protocol.event_locations).
Passing = tuple[LiveMessage, str | None, bool, tuple[str, ...]]


@dataclass(eq=False, slots=True)
class Sub:
    client: Client
    channel: str
    match: Match
    after: int = 0  # publications up to here were in the subscribe reply
    # While the subscribe reply is being prepared, live publications wait here (then `None`).
    pending: list[Passing] | None = field(default_factory=list)
    was_reset: bool = False
    coalesce_s: float | None = None  # hold the newest stock_changed per (SKU, location) for up to this long
    held: dict[tuple[str, str], tuple[int, bytes]] = field(default_factory=dict)  # -> (offset, pub frame)
    timer: asyncio.TimerHandle | None = None

    @property
    def needs_locations(self) -> bool:
        return self.match.locations is not None or self.coalesce_s is not None

    def offer(self, message: LiveMessage, frame: bytes, places: tuple[str, ...]) -> None:
        """Send a publication, or, coalescing, hold it: a hot (SKU, location)'s `stock_changed` goes out at
        most once a window, the newest (each carries its location's levels, so one location's newest does
        not stand for another's). What is held leaves at the end of the window, or before any publication
        of another type, in offset order, so offsets never go back."""
        if self.coalesce_s is None:
            self.client.send(frame)
        elif message.type != COALESCED[1]:
            self.release()
            self.client.send(frame)
        else:
            key = (message.sku, places[0] if places else "")
            if key in self.held:
                COALESCED_PUBS.inc()
            self.held[key] = (message.offset, frame)
            if self.timer is None:
                self.timer = asyncio.get_running_loop().call_later(self.coalesce_s, self.release)

    def release(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for _, frame in sorted(self.held.values()):
            self.client.send(frame)
        self.held.clear()

    def drop(self) -> None:
        """Unsubscribed or gone: what is held is not sent."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.held.clear()


class Hub:
    def __init__(self) -> None:
        self.connections = 0  # open sockets, also those that have not sent `connect` yet
        self.unauthenticated: Tally[str] = Tally()  # sockets waiting for `connect`, by client address
        self.clients: set[Client] = set()
        self._subs: dict[str, dict[Client, Sub]] = {channel: {} for channel in CHANNELS}
        self._by_category: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self._by_location: dict[str, int] = dict.fromkeys(CHANNELS, 0)

    def join(self, client: Client) -> None:
        self.clients.add(client)
        CLIENTS.set(len(self.clients))

    def leave(self, client: Client) -> None:
        for sub in list(client.subs.values()):
            self.remove(sub)
        self.clients.discard(client)
        CLIENTS.set(len(self.clients))

    def add(self, sub: Sub) -> None:
        old = sub.client.subs.get(sub.channel)
        if old is not None:
            self.remove(old)
        sub.client.subs[sub.channel] = sub
        self._subs[sub.channel][sub.client] = sub
        if sub.match.category is not None:
            self._by_category[sub.channel] += 1
        if sub.needs_locations:
            self._by_location[sub.channel] += 1
        SUBSCRIPTIONS.labels(sub.channel).set(len(self._subs[sub.channel]))

    def remove(self, sub: Sub) -> None:
        if self._subs[sub.channel].get(sub.client) is not sub:
            return
        del self._subs[sub.channel][sub.client]
        sub.client.subs.pop(sub.channel, None)
        sub.drop()
        if sub.match.category is not None:
            self._by_category[sub.channel] -= 1
        if sub.needs_locations:
            self._by_location[sub.channel] -= 1
        SUBSCRIPTIONS.labels(sub.channel).set(len(self._subs[sub.channel]))

    def wants_categories(self, channel: str) -> bool:
        return self._by_category[channel] > 0

    def wants_locations(self, channel: str) -> bool:
        """Whether a subscriber filters on locations or coalesces: only then is an event's JSON read."""
        return self._by_location[channel] > 0

    def dispatch(
        self, channel: str, message: LiveMessage, category: str | None, moved: bool, places: tuple[str, ...]
    ) -> None:
        """`places`: the event's locations, read only while `wants_locations` (else ())."""
        frame: bytes | None = None
        direct: list[Client] = []
        for client, sub in self._subs[channel].items():
            if sub.pending is not None:
                sub.pending.append((message, category, moved, places))
                continue
            if message.offset <= sub.after or not (
                sub.match.everything or sub.match.accepts(message.sku, category, moved, places)
            ):
                continue
            if frame is None:
                frame = pub_frame(channel, message)
            if sub.coalesce_s is not None:
                sub.offer(message, frame, places)
            elif client.writable():
                direct.append(client)
            else:
                client.enqueue(frame)
        if direct and frame is not None:
            encoded = wire(frame)
            for client in direct:
                client.ws.transport.write(encoded)
            FRAMES.inc(len(direct))

    def reset(self, channel: str) -> None:
        """Tell every subscriber of the channel that continuity is lost; they resubscribe."""
        frame = f'{{"type":"reset","channel":"{channel}"}}'.encode()
        log.info("relay_reset", channel=channel, subscribers=len(self._subs[channel]))
        for sub in list(self._subs[channel].values()):
            if sub.pending is not None:
                sub.was_reset = True  # its subscribe reply goes first; the reset follows it
                continue
            self.remove(sub)
            sub.client.send(frame)
        RESETS.labels(channel).inc()

    def subscribers(self, channel: str) -> int:
        return len(self._subs[channel])


async def close_all(hub: Hub, code: int, reason: str) -> None:
    for client in list(hub.clients):
        client.close(code, reason)
    with contextlib.suppress(Exception):
        await asyncio.gather(*(c.ws.wait_closed() for c in list(hub.clients)), return_exceptions=True)
