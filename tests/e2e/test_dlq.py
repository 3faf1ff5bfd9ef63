"""A bad record travels to the DLQ with its reason, `invmon dlq list` shows it, `invmon dlq replay` sends
the original bytes back to the command topic (where, still bad, it is dead-lettered again, not lost)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.settings import Settings
from invmon import dlq
from invmon.cli import app
from invmon.dlq import REPLAYED_HEADER, DeadLetter
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


async def find(settings: Settings, marker: bytes, count: int, within: float = 20.0) -> list[DeadLetter]:
    async def poll() -> list[DeadLetter]:
        while True:
            found = [x async for x in dlq.read(settings.kafka_bootstrap, STOCK_COMMANDS_DLQ.name)]
            hits = [x for x in found if x.headers.get("x-marker") == marker]
            if len(hits) >= count:
                return hits
            await asyncio.sleep(0.2)  # poll interval while waiting for a condition

    return await asyncio.wait_for(poll(), within)


async def test_dead_letter_list_and_replay(pipeline: dict[str, Process], stack: Settings) -> None:
    marker = uuid.uuid4().hex.encode()
    body = json.dumps({"type": "receive_stock", "sku": "DLQ-1", "quantity": "many"}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(STOCK_COMMANDS.name, body, key=b"DLQ-1", headers=[("x-marker", marker)])
    finally:
        await producer.stop()

    [letter] = await find(stack, marker, 1)
    assert letter.value == body
    assert "quantity" in letter.reason
    assert letter.origin.startswith(f"{STOCK_COMMANDS.name}:")

    runner = CliRunner()
    # The CLI runs its own event loop, so it gets a thread of its own.
    listed = await asyncio.to_thread(runner.invoke, app, ["dlq", "list", "--last", "100000"])
    assert listed.exit_code == 0, listed.output
    assert f"{letter.partition}:{letter.offset}" in listed.output

    at = f"{letter.partition}:{letter.offset}"
    replayed = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay", "--at", at])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 record" in replayed.output

    first, second = sorted(
        await find(stack, marker, 2), key=lambda x: x.headers.get(REPLAYED_HEADER) is not None
    )
    assert second.value == body
    assert (
        second.headers[REPLAYED_HEADER]
        == f"{STOCK_COMMANDS_DLQ.name}:{first.partition}:{first.offset}".encode()
    )


def test_replay_refuses_unknown_positions_and_needs_a_choice(stack: Settings) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["dlq", "replay"]).exit_code != 0
    missing = runner.invoke(app, ["dlq", "replay", "--at", "0:999999999"])
    assert missing.exit_code == 1
    assert "not in" in missing.output
