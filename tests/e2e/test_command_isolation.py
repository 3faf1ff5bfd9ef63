"""Issue 14 from the outside: a dead-lettered command's status, a record too large for the DLQ replayed from
its origin, the price pipeline around poison records, and producers that partition keys another way."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import uuid
import zlib
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from typer.testing import CliRunner

from contracts.topics import PRICE_COMMANDS, PRICE_COMMANDS_DLQ, STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.kafka import COMMAND_TOPIC_MAX_BYTES, DLQ_TOPIC_MAX_BYTES
from infra.settings import Settings
from invmon import dlq
from invmon.cli import app
from invmon.dlq import REPLAYED_HEADER, DeadLetter
from tests.e2e.support import new_sku, wait_for_status
from tests.integration import helpers as h
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

MARKER = "x-marker"


async def letters(
    settings: Settings, topic: str, marker: bytes, count: int, within: float = 30
) -> list[DeadLetter]:
    async def poll() -> list[DeadLetter]:
        while True:
            found = [x async for x in dlq.read(settings, topic)]
            hits = [x for x in found if x.headers.get(MARKER) == marker]
            if len(hits) >= count:
                return hits
            await asyncio.sleep(0.2)  # poll interval while waiting for a condition

    return await asyncio.wait_for(poll(), within)


async def produce(
    settings: Settings,
    topic: str,
    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
    **opts: Any,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", **opts)
    await producer.start()
    try:
        acks = [await producer.send(topic, value, key, headers=headers) for key, value, headers in records]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def test_a_dead_lettered_command_reads_dead_lettered_until_it_is_applied(
    pipeline: dict[str, Process], stack: Settings, edge: httpx.AsyncClient
) -> None:
    sku = new_sku()
    marker = uuid.uuid4().hex.encode()
    bad = {**h.receive(sku, 1), "quantity": "many"}
    await produce(stack, STOCK_COMMANDS.name, [(sku.encode(), h.encode(bad), [(MARKER, marker)])])
    status = await wait_for_status(edge, bad["command_id"])
    assert status["status"] == "dead_lettered", status
    assert "quantity" in status["reason"]

    # Fixed and sent again with the same command id (what a replay after a fix does): applied wins.
    fixed = {**h.register(sku), "command_id": bad["command_id"]}
    await produce(stack, STOCK_COMMANDS.name, [(sku.encode(), h.encode(fixed), [])])

    async def current() -> str:
        return str((await edge.get(f"/v1/commands/{bad['command_id']}")).json()["status"])

    assert await h.wait_until(current, lambda s: s == "applied", within=20, what="applied") == "applied"


async def test_a_record_too_large_for_the_dlq_goes_by_reference_and_replays_from_its_origin(
    pipeline: dict[str, Process], stack: Settings
) -> None:
    sku = new_sku()
    marker = uuid.uuid4().hex.encode()
    body = {**h.receive(sku, 1), "padding": "ab" * (DLQ_TOPIC_MAX_BYTES // 2 + 100_000)}
    value = json.dumps(body).encode()
    await produce(
        stack,
        STOCK_COMMANDS.name,
        [(sku.encode(), value, [(MARKER, marker)])],
        compression_type="gzip",
        max_request_size=64 * 1024 * 1024,
    )
    [letter] = await letters(stack, STOCK_COMMANDS_DLQ.name, marker, 1)
    assert letter.by_reference
    assert letter.size == len(value)
    assert letter.value == value[:1024]
    assert letter.headers["x-origin-sha256"] == hashlib.sha256(value).hexdigest().encode()

    runner = CliRunner()
    listed = await asyncio.to_thread(runner.invoke, app, ["dlq", "list", "--last", "100000"])
    assert f"{letter.partition}:{letter.offset}" in listed.output
    at = f"{letter.partition}:{letter.offset}"
    replayed = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay", "--at", at])
    assert replayed.exit_code == 0, replayed.output
    # The original came back from its topic (checked against its sha256) and, still bad, went by reference
    # to the DLQ again, marked as a replay.
    again = [
        x for x in await letters(stack, STOCK_COMMANDS_DLQ.name, marker, 2) if x.headers.get(REPLAYED_HEADER)
    ]
    assert again[0].headers["x-origin-sha256"] == letter.headers["x-origin-sha256"]
    assert again[0].headers[REPLAYED_HEADER] == f"{STOCK_COMMANDS_DLQ.name}:{at}".encode()


def price(sku: str, selling: str) -> dict[str, Any]:
    return {**h._envelope("set_price", sku), "currency": "EUR", "selling_price": selling}


async def test_price_commands_apply_around_poison_records(
    pipeline: dict[str, Process], stack: Settings, edge: httpx.AsyncClient
) -> None:
    marker = uuid.uuid4().hex.encode()
    skus = [new_sku() for _ in range(12)]
    for sku in skus:
        response = await edge.post("/v1/items", json={"sku": sku, "name": "Priced"})
        assert (await wait_for_status(edge, response.json()["command_id"]))["status"] == "applied"
    valid = [price(sku, f"{10 + i}.00") for i, sku in enumerate(skus)]
    sku = skus[0]
    near = COMMAND_TOPIC_MAX_BYTES - 400
    poison: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = [
        (sku.encode(), b"not json", []),
        (sku.encode(), h.encode({**price(sku, "1.00"), "selling_price": 1.5}), []),  # a float: wrong schema
        (sku.encode(), h.encode({**price(sku, "1.00"), "type": "guess_price"}), []),
        (skus[1].encode(), h.encode(price(sku, "1.00")), []),  # key != SKU
        (sku.encode(), b"{}", [("x-binary", b"\xff\xfe")]),
        (sku.encode(), os.urandom(near), []),
    ]
    records = [(c["sku"].encode(), h.encode(c), [(MARKER, b"valid")]) for c in valid]
    for i, (key, value, extra) in enumerate(poison):
        records.insert(2 * i + 1, (key, value, [(MARKER, marker), *extra]))
    await produce(stack, PRICE_COMMANDS.name, records, max_request_size=COMMAND_TOPIC_MAX_BYTES * 2)
    huge = json.dumps({**price(sku, "1.00"), "padding": "ab" * (DLQ_TOPIC_MAX_BYTES // 2 + 1)}).encode()
    await produce(
        stack,
        PRICE_COMMANDS.name,
        [(sku.encode(), huge, [(MARKER, marker)])],
        compression_type="gzip",
        max_request_size=64 * 1024 * 1024,
    )
    dead = await letters(stack, PRICE_COMMANDS_DLQ.name, marker, len(poison) + 1)
    assert all(x.reason for x in dead)
    assert sum(x.by_reference for x in dead) == 1
    conn = await asyncpg.connect(h.pg_dsn(stack))
    try:
        ids = [uuid.UUID(c["command_id"]) for c in valid]
        await h.wait_until(
            lambda: h.processed_count(conn, ids), lambda n: n == len(ids), within=30, what="price commands"
        )
    finally:
        await conn.close()


MISPARTITIONED = re.compile(r'^invmon_mispartitioned_records_total\{[^}]*worker="stock"[^}]*\} ')


async def mispartitioned(settings: Settings) -> float:
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"http://127.0.0.1:{settings.stock_worker_port}/metrics")).text
    return sum(float(x.split()[-1]) for x in text.splitlines() if MISPARTITIONED.match(x))


async def partition_of_marker(
    settings: Settings, topic: str, since: dict[TopicPartition, int], marker: str
) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        for _ in range(50):
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                if any(marker.encode() in (r.value or b"") for r in records):
                    return int(tp.partition)
        raise AssertionError(f"{marker} not found")
    finally:
        await consumer.stop()


async def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def test_kcat_with_murmur2_lands_where_the_edge_puts_a_key_and_crc32_is_counted(
    pipeline: dict[str, Process], stack: Settings, edge: httpx.AsyncClient
) -> None:
    if shutil.which("kcat") is None:  # ./dev test installs it: a missing client is a failure, not a skip
        pytest.fail("kcat is not installed: apt-get install -y kcat (./dev test does)")
    partitions = stack.kafka_partitions

    def murmur(key: str) -> int:
        return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions

    # A SKU that CRC32 (librdkafka's default) puts on another partition than murmur2.
    sku = next(s for s in (new_sku() for _ in range(100)) if zlib.crc32(s.encode()) % partitions != murmur(s))
    response = await edge.post("/v1/items", json={"sku": sku, "name": "Partitioned"})
    assert (await wait_for_status(edge, response.json()["command_id"]))["status"] == "applied"
    before = await mispartitioned(stack)

    async def kcat(command: dict[str, Any], *extra: str) -> int:
        since = await end_offsets(stack, STOCK_COMMANDS.name)
        line = f"{sku}|{json.dumps(command)}\n".encode()
        args = ["kcat", "-P", "-b", stack.kafka_bootstrap, "-t", STOCK_COMMANDS.name, "-K", "|", *extra]
        done = await asyncio.to_thread(subprocess.run, args, input=line, capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        status = await wait_for_status(edge, command["command_id"])
        assert status["status"] == "applied", status  # applied either way, only counted
        return await partition_of_marker(stack, STOCK_COMMANDS.name, since, command["command_id"])

    right = await kcat(h.receive(sku, 1), "-X", "partitioner=murmur2_random")
    assert right == murmur(sku)
    assert await mispartitioned(stack) == before

    wrong = await kcat(h.receive(sku, 1))
    assert wrong != murmur(sku)
    assert await mispartitioned(stack) == before + 1
