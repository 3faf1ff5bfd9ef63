"""The relay's pure decisions: gap detection, recovery, filters, rate limit, and the frame contracts."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from api_edge.relay.hub import pub_frame
from api_edge.relay.protocol import Cursor, Match, Step, TokenBucket, fills_gap, replay_from, replayable
from api_edge.relay.session import recovered_frame
from api_edge.relay.snapshot import Snapshots
from contracts.live import CLIENT_FRAME, MAX_FILTER_SKUS, Channel, Filter, Position, Subscribe, Subscribed
from infra.live_redis import LiveMessage, parse_message


def test_cursor_steps() -> None:
    cursor = Cursor()
    assert cursor.step("e1", 5) is Step.NEW_EPOCH  # a fresh relay has no epoch yet
    cursor.advance("e1", 5)
    assert cursor.step("e1", 6) is Step.DELIVER
    assert cursor.step("e1", 5) is Step.DUPLICATE
    assert cursor.step("e1", 4) is Step.DUPLICATE
    assert cursor.step("e1", 8) is Step.GAP
    assert cursor.step("e2", 6) is Step.NEW_EPOCH
    assert cursor.step("e2", 1) is Step.NEW_EPOCH


@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_cursor_finds_every_missing_offset(received: list[bool]) -> None:
    """Offsets 1..n arrive with some lost; filling each gap with exactly what it lacks yields 1..n."""
    cursor = Cursor("e", 0)
    passed: list[int] = []
    for offset, arrived in enumerate(received, start=1):
        if not arrived:
            continue
        step = cursor.step("e", offset)
        if step is Step.GAP:
            missing = list(range(cursor.offset + 1, offset))
            assert missing
            assert fills_gap(cursor.offset, offset, missing)
            passed += missing
        else:
            assert step is Step.DELIVER
        passed.append(offset)
        cursor.advance("e", offset)
    last = max((i for i, arrived in enumerate(received, start=1) if arrived), default=0)
    assert passed == list(range(1, last + 1))


def test_fills_gap_needs_exactly_the_missing_offsets() -> None:
    assert fills_gap(3, 6, [4, 5])
    assert fills_gap(3, 4, [])
    assert not fills_gap(3, 6, [5])  # trimmed: 4 is gone
    assert not fills_gap(3, 6, [4])
    assert not fills_gap(3, 6, [4, 5, 6])


def test_replay_only_within_the_epoch_and_not_ahead() -> None:
    assert replay_from(None, "e", 10) is None
    assert replay_from(Position(epoch="old", offset=3), "e", 10) is None
    assert replay_from(Position(epoch="e", offset=11), "e", 10) is None  # ahead: from a lost epoch
    assert replay_from(Position(epoch="e", offset=3), "e", 10) == 3
    assert replay_from(Position(epoch="e", offset=10), "e", 10) == 10


def test_replayable_needs_a_contiguous_history_up_to_the_position() -> None:
    assert replayable(3, 6, [4, 5, 6])
    assert replayable(3, 6, [4, 5, 6, 7])  # published after the position was read
    assert replayable(6, 6, [])
    assert not replayable(3, 6, [5, 6])  # trimmed
    assert not replayable(3, 6, [4, 5])  # short of the position
    assert not replayable(3, 6, [])


def test_match_filters() -> None:
    everything = Match.of(None)
    assert everything.everything
    assert everything.accepts("A", None, False)
    by_sku = Match.of(Filter(skus=["a-1", "B"]))
    assert by_sku.accepts("A-1", None, False)
    assert not by_sku.accepts("C", None, False)
    by_category = Match.of(Filter(category="lamps"))
    assert by_category.accepts("X", "lamps", False)
    assert not by_category.accepts("X", "mugs", False)
    assert not by_category.accepts("X", None, False)
    assert by_category.accepts("X", "mugs", True)  # a move: the lamps client learns the item left
    both = Match.of(Filter(skus=["X"], category="lamps"))
    assert both.accepts("X", "lamps", False)
    assert not both.accepts("Y", "lamps", False)


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert sum(bucket.allow(0.0) for _ in range(30)) == 20
    assert not bucket.allow(0.05)
    assert bucket.allow(0.1)
    assert sum(bucket.allow(10.0) for _ in range(30)) == 20  # refilled, never above the burst


def test_message_roundtrip_and_pub_frame_keep_the_event_json() -> None:
    payload = '{"sku": "A-1", "note": "two  spaces and \\"quotes\\""}'
    message = parse_message(f"42 ep0ch A-1 stock_changed {payload}".encode())
    assert message == LiveMessage(42, "ep0ch", "A-1", "stock_changed", payload)
    frame = pub_frame("inventory", message)
    assert frame.decode() == (
        f'{{"type":"pub","channel":"inventory","epoch":"ep0ch","offset":42,"event":{payload}}}'
    )


def test_client_frames_are_strict() -> None:
    frame = CLIENT_FRAME.validate_json(
        '{"type": "subscribe", "channel": "prices", "filter": {"skus": ["ab-1"]},'
        ' "recover": {"epoch": "e", "offset": 7}}'
    )
    assert isinstance(frame, Subscribe)
    assert frame.filter is not None
    assert frame.filter.skus == ["AB-1"]
    for bad in (
        '{"type": "subscribe", "channel": "orders"}',
        '{"type": "subscribe", "channel": "prices", "extra": 1}',
        '{"type": "subscribe", "channel": "prices", "recover": {"epoch": "e", "offset": -1}}',
        '{"type": "subscribe", "channel": "prices", "filter": {"skus": ["not a sku"]}}',
        '{"type": "connect"}',
        '{"type": "hello"}',
        "[]",
    ):
        with pytest.raises(ValidationError):
            CLIENT_FRAME.validate_json(bad)
    with pytest.raises(ValidationError):
        Filter(skus=[f"S{i}" for i in range(MAX_FILTER_SKUS + 1)])


def test_recovered_frame_is_a_subscribed_frame_of_the_contract() -> None:
    payloads = ['{"sku": "A-1", "version": 3}', '{"sku": "B-2", "version": 9}']
    messages = [LiveMessage(7 + i, "ep", "A-1", "stock_changed", p) for i, p in enumerate(payloads)]
    frame = Subscribed.model_validate_json(recovered_frame("alerts", "ep", 8, messages))
    assert (frame.channel, frame.epoch, frame.offset, frame.recovered) == ("alerts", "ep", 8, True)
    assert [(p.offset, p.event["version"]) for p in frame.publications] == [(7, 3), (8, 9)]
    assert frame.snapshot is None


async def test_concurrent_snapshots_share_reads_that_began_after_their_position() -> None:
    reads: list[int] = []
    gate = asyncio.Event()

    class Counted(Snapshots):
        async def _read(self, channel: Channel, wanted: Filter | None) -> tuple[bytes, bool]:
            reads.append(len(reads) + 1)
            number = len(reads)
            await gate.wait()
            return f"[{number}]".encode(), False

    snapshots = Counted(reads=None, limit=10)  # type: ignore[arg-type]
    first = asyncio.create_task(snapshots.get("inventory", None))
    await asyncio.sleep(0)  # the first read is running
    later = [asyncio.create_task(snapshots.get("inventory", None)) for _ in range(50)]
    other = asyncio.create_task(snapshots.get("inventory", Filter(category="lamps")))
    await asyncio.sleep(0)
    gate.set()
    assert await first == (b"[1]", False)
    results = await asyncio.gather(*later)
    assert {r[0] for r in results} == {b"[3]"}  # the read that began after they asked (2: the filtered one)
    assert await other == (b"[2]", False)
    assert len(reads) == 3
