"""Adaptive lingering on the real stack: a steady stream is applied in few batches, and a lone command
after a quiet spell is applied at once, well inside the linger bound.

The bound is set very long (1 s) so that either failure shows: a worker that never lingers applies the
stream one command per batch, one that always lingers holds the lone command for a second."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from infra.settings import Settings
from tests.integration import helpers as h

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

LINGER_S = 1.0
STREAM = 30


async def batches(port: int) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in text.splitlines():
        if line.startswith('invmon_batch_records_count{worker="stock"}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_steady_stream_is_batched_and_a_lone_command_is_not_held(
    stack: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    sku = f"LG-{h.run_id()}"
    env = {"INVMON_WORKER_LINGER_MS": str(int(LINGER_S * 1000)), "INVMON_WORKER_LINGER_RECORDS": str(STREAM)}
    worker = h.start_worker(stack.stock_worker_port, tmp_path, env)
    try:
        async with h.CommandProducer(stack) as producer:
            registered = h.register(sku, 0)
            await producer.command(registered)
            await h.wait_processed(db, registered, what="the item registration")
            before = await batches(worker.port)

            receipts = [h.receive(sku, 1) for _ in range(STREAM)]
            for receipt in receipts:
                await producer.command(receipt)
                await asyncio.sleep(0.01)  # the stream's pace: ~100 commands/s, one produce request each
            await h.wait_until(
                lambda: h.processed_count(db, [uuid.UUID(r["command_id"]) for r in receipts]),
                lambda n: n == STREAM,
                within=30,
                what="the stream to be applied",
            )
            streamed = await batches(worker.port) - before
            # Without lingering each command of the stream is a batch of its own (~30).
            assert streamed <= STREAM / 3, f"{streamed:.0f} batches for {STREAM} commands"

            # A quiet spell longer than the bound: the worker's rate estimate drops to < 1 per bound.
            await asyncio.sleep(LINGER_S * 1.5)
            lone = h.receive(sku, 1)
            sent = time.monotonic()
            await producer.command(lone)
            await h.wait_processed(db, lone, what="the lone command")
            assert time.monotonic() - sent < LINGER_S * 0.6
    finally:
        worker.stop()
