"""Where the live protocol lives in Redis, shared by the outbox relay (writer) and the WebSocket relay
(reader). One message format everywhere: `<offset> <epoch> <sku> <event type> <event JSON>`, the same text
in the pub/sub message and in the stream entry (field `m`), so a reader parses both alike.

Keys: `invmon:live:epoch` (random, created once per Redis data lifetime and master replication id),
`invmon:live:replid` (that replication id), per channel
`invmon:live:offset:<channel>` (INCR), `invmon:live:stream:<channel>` (bounded history, entry id
`<offset>-0`) and the pub/sub channel `invmon:live:pub:<channel>`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

PREFIX = "invmon:live:"
EPOCH_KEY = PREFIX + "epoch"
REPLID_KEY = PREFIX + "replid"  # the master replication id the epoch was created under
PUB_PATTERN = PREFIX + "pub:*"
STREAM_FIELD = b"m"


def offset_key(channel: str) -> str:
    return f"{PREFIX}offset:{channel}"


def stream_key(channel: str) -> str:
    return f"{PREFIX}stream:{channel}"


def pub_channel(channel: str) -> str:
    return f"{PREFIX}pub:{channel}"


def channel_of(pub: str) -> str:
    return pub.removeprefix(PREFIX + "pub:")


# A new epoch means Redis lost (or may have lost) history: the epoch is tied to the master's replication
# id (INFO replication's master_replid), which changes when a replica is promoted (Sentinel failover: the
# new master may lack the last writes the old one acknowledged, so its counters may hand out offsets that
# readers already saw with other publications) and when a Redis without replication history restarts. The
# channel's counter and stream start again with a new epoch, so an offset always names the same
# publication within one epoch.
# KEYS: epoch, channel offset, channel stream, replication id; ARGV[1]: a fresh epoch, used only when the
# epoch is missing or was created under another replication id.
_EPOCH = """
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or ''
local epoch = redis.call('GET', KEYS[1])
if not epoch or redis.call('GET', KEYS[4]) ~= replid then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[4], replid)
  redis.call('DEL', KEYS[2], KEYS[3])
  epoch = ARGV[1]
end
"""

_PUBLISH = (
    _EPOCH
    + """
local offset = 0
for i = 4, #ARGV, 2 do
  offset = redis.call('INCR', KEYS[2])
  local msg = offset .. ' ' .. epoch .. ' ' .. ARGV[i] .. ' ' .. ARGV[i + 1]
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], offset .. '-0', 'm', msg)
  redis.call('PUBLISH', ARGV[3], msg)
end
return offset
"""
)

_POSITION = (
    _EPOCH
    + """
return {epoch, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
)


@dataclass(frozen=True, slots=True)
class LiveMessage:
    offset: int
    epoch: str
    sku: str
    type: str
    payload: str  # the event JSON exactly as the outbox holds it


def parse_message(raw: bytes | str) -> LiveMessage:
    text = raw.decode() if isinstance(raw, bytes) else raw
    offset, epoch, sku, type_, payload = text.split(" ", 4)
    return LiveMessage(int(offset), epoch, sku, type_, payload)


def new_epoch() -> str:
    return secrets.token_hex(8)


class LiveRedis:
    """The Lua scripts, registered once per client (redis-py sends EVALSHA and loads on NOSCRIPT)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._publish = redis.register_script(_PUBLISH)
        self._position = redis.register_script(_POSITION)

    async def publish(self, channel: str, events: Sequence[tuple[str, str, str]], *, history: int) -> int:
        """Publish (sku, event type, event JSON) in order; returns the channel offset of the last one."""
        args: list[str | int] = [new_epoch(), history, pub_channel(channel)]
        for sku, type_, payload in events:
            args += [f"{sku} {type_}", payload]
        keys = [EPOCH_KEY, offset_key(channel), stream_key(channel), REPLID_KEY]
        return int(await self._publish(keys=keys, args=args))

    async def position(self, channel: str) -> tuple[str, int]:
        """The current epoch (created if Redis has none) and the channel's last offset."""
        keys = [EPOCH_KEY, offset_key(channel), stream_key(channel), REPLID_KEY]
        epoch, offset = await self._position(keys=keys, args=[new_epoch()])
        return (epoch.decode() if isinstance(epoch, bytes) else str(epoch)), int(offset)

    async def history(self, channel: str, after: int, count: int | None = None) -> list[LiveMessage]:
        """Stream entries with offset > after, in order (at most `count`)."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrange(  # type: ignore[assignment]
            stream_key(channel), min=f"({after}-0", max="+", count=count
        )
        return [parse_message(fields[STREAM_FIELD]) for _, fields in entries]

    async def first_offset(self, channel: str) -> int | None:
        """The oldest offset the history still holds (None: empty)."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrange(  # type: ignore[assignment]
            stream_key(channel), min="-", max="+", count=1
        )
        return int(entries[0][0].split(b"-")[0]) if entries else None
