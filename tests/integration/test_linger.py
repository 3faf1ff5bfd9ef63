"""Adaptive lingering on the real stack: a steady stream is applied in few batches, and a lone command
after a quiet spell is not held.

The bound is set very long (1 s) so that either failure shows: a worker that never lingers applies the
stream one command per batch, one that always lingers holds the lone command for up to a second. The
worker's own `linger` phase histogram says how long the lone command's batch waited, so no wall-clock
bound of the test's own depends on how busy the machine is."""

from __future__ import annotations

import asyncio
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


async def metric(port: int, sample: tuple[str, dict[str, str]]) -> float:
    """A sample of the worker's /metrics: a name with these labels (in whatever order they are written)."""
    name, labels = sample
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    for line in text.splitlines():
        written, _, value = line.rpartition(" ")
        if written.startswith(name + "{") and wanted <= set(written[len(name) + 1 : -1].split(",")):
            return float(value)
    return 0.0


BATCHES = ("invmon_batch_records_count", {"worker": "stock"})
LINGERED = ("invmon_batch_phase_seconds_count", {"worker": "stock", "phase": "linger"})
LINGERED_QUICKLY = ("invmon_batch_phase_seconds_bucket", {"worker": "stock", "phase": "linger", "le": "0.25"})


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
            before = await metric(worker.port, BATCHES)

            receipts = [h.receive(sku, 1) for _ in range(STREAM)]
            for receipt in receipts:
                await producer.command(receipt)
                # The stimulus, not a wait: a stream paced at ~100 commands/s, one produce request each, so
                # that a worker that does not linger takes each command as a batch of its own.
                await asyncio.sleep(0.01)
            await h.wait_until(
                lambda: h.processed_count(db, [uuid.UUID(r["command_id"]) for r in receipts]),
                lambda n: n == STREAM,
                within=30,
                what="the stream to be applied",
            )
            streamed = await metric(worker.port, BATCHES) - before
            # Without lingering each command of the stream is a batch of its own (~30).
            assert streamed <= STREAM / 3, f"{streamed:.0f} batches for {STREAM} commands"

            # A quiet spell longer than the bound (the stimulus again): the worker's rate estimate drops to
            # < 1 command per bound.
            await asyncio.sleep(LINGER_S * 1.5)
            lingered = await metric(worker.port, LINGERED)
            quick = await metric(worker.port, LINGERED_QUICKLY)
            lone = h.receive(sku, 1)
            await producer.command(lone)
            await h.wait_processed(db, lone, what="the lone command")
            # Its batch was observed once, and waited less than a quarter of the bound (no wait at all).
            assert await metric(worker.port, LINGERED) == lingered + 1
            assert await metric(worker.port, LINGERED_QUICKLY) == quick + 1, "the lone command was held"
    finally:
        worker.stop()
