"""The relay's classification of one event's failure, without a stack: a refusal isolates the event, an
outage fails the round."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from contracts.event_dead_letters import EventDeadLetter
from db.outbox_repo import PendingEvent
from workers.outbox_relay.refusals import BrokerRefused, dead_letter, oversize
from workers.outbox_relay.relay import publish


def event(n: int, payload: str = "{}", channel: str = "inventory") -> PendingEvent:
    return PendingEvent(
        n, f"00000000-0000-0000-0000-{n:012d}", "stock_changed", channel, "SKU-1", payload, 0.0
    )


class FakeLive:
    """Refuses, with `error`, any script call that carries a payload in `refuse`."""

    def __init__(self, refuse: set[str], error: Exception) -> None:
        self.refuse = refuse
        self.error = error
        self.published: list[str] = []

    async def publish(self, channel: str, events: Sequence[tuple[str, str, str]], *, history: int) -> int:
        if any(payload in self.refuse for _, _, payload in events):
            raise self.error
        self.published += [payload for _, _, payload in events]
        return len(self.published)


class FakeKafka:
    def __init__(self, refuse_on_ack: set[bytes] | None = None, fail: Exception | None = None) -> None:
        self.refuse_on_ack = refuse_on_ack or set()
        self.fail = fail
        self.sent: list[bytes] = []

    async def send(self, body: bytes, topic: str, key: bytes, headers: dict[str, str]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if body in self.refuse_on_ack:
            future.set_exception(MessageSizeTooLargeError())
        elif self.fail is not None:
            future.set_exception(self.fail)
        else:
            self.sent.append(body)
            future.set_result(None)
        return future


async def run(events: list[PendingEvent], live: FakeLive, kafka: FakeKafka, **kw: Any) -> list[Any]:
    options: dict[str, Any] = {"history": 10, "max_bytes": 1 << 20, "known": {}} | kw
    return await publish(events, kafka.send, live, **options)  # type: ignore[arg-type]


async def test_redis_refusing_one_event_isolates_it_and_publishes_the_others() -> None:
    events = [event(1, '{"a":1}'), event(2, '{"bad":1}'), event(3, '{"a":3}')]
    live = FakeLive({'{"bad":1}'}, ResponseError("ERR string exceeds maximum allowed size"))
    kafka = FakeKafka()
    refused = await run(events, live, kafka)
    assert [(r.event.id, r.destination) for r in refused] == [(2, "redis")]
    assert "exceeds maximum" in refused[0].reason
    assert live.published == ['{"a":1}', '{"a":3}']
    assert len(kafka.sent) == 3  # Kafka still has it


@pytest.mark.parametrize(
    "error",
    [ResponseError("OOM command not allowed when used memory > 'maxmemory'"), RedisConnectionError("down")],
)
async def test_redis_that_cannot_take_anything_fails_the_round(error: Exception) -> None:
    live = FakeLive({"{}"}, error)
    with pytest.raises(type(error)):
        await run([event(1)], live, FakeKafka())


async def test_an_event_over_the_topic_limit_is_refused_before_it_is_sent() -> None:
    big = "x" * 70_000
    kafka = FakeKafka()
    refused = await run(
        [event(1), event(2, big), event(3)], FakeLive(set(), Exception()), kafka, max_bytes=65_536
    )
    assert [(r.event.id, r.destination) for r in refused] == [(2, "kafka")]
    assert refused[0].reason.startswith("MessageSizeTooLargeError: the record is ")
    assert kafka.sent == [b"{}", b"{}"]


async def test_a_broker_refusal_names_the_rows_and_fails_the_round() -> None:
    kafka = FakeKafka(refuse_on_ack={b'{"big":1}'})
    with pytest.raises(BrokerRefused) as raised:
        await run([event(1), event(2, '{"big":1}')], FakeLive(set(), Exception()), kafka)
    assert list(raised.value.refusals) == [2]
    # The next round refuses it from memory, without sending it.
    refused = await run(
        [event(2, '{"big":1}'), event(3)],
        FakeLive(set(), Exception()),
        FakeKafka(),
        known=raised.value.refusals,
    )
    assert [r.event.id for r in refused] == [2]


async def test_a_kafka_outage_fails_the_round() -> None:
    with pytest.raises(KafkaTimeoutError):
        await run([event(1)], FakeLive(set(), Exception()), FakeKafka(fail=KafkaTimeoutError()))


@pytest.mark.parametrize(
    ("value", "limit", "refused"), [(100, 4096, False), (60_000, 65_536, False), (65_500, 65_536, True)]
)
def test_oversize_counts_key_headers_and_the_batch_overhead(value: int, limit: int, refused: bool) -> None:
    headers = {"event-type": "stock_changed", "event-id": "x" * 36, "content-type": "application/json"}
    assert (oversize(b"x" * value, b"SKU-1", headers, limit) is not None) is refused


def test_the_dead_letter_is_a_reference_that_fits_and_its_example_validates() -> None:
    payload = json.dumps({"pad": "x" * (3 << 20)})
    letter = EventDeadLetter.model_validate_json(
        dead_letter(event(7, payload), "MessageSizeTooLargeError: big")
    )
    raw = payload.encode()
    assert (letter.outbox_id, letter.size, letter.sha256) == (7, len(raw), hashlib.sha256(raw).hexdigest())
    assert letter.head == payload[:1024]
    assert len(dead_letter(event(7, payload), "x" * 500)) < 4096
    for example in EventDeadLetter.model_json_schema()["examples"]:
        EventDeadLetter.model_validate(example)
