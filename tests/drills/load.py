"""The steady load of a fault drill: receipts of one unit, each with its own command id, half over HTTP
(through nginx in the cluster) and half straight to Kafka with the pipeline's own producer settings.

Unlike bench.paced, a sender here survives the fault: a refused or reset connection is recorded as an
unacknowledged request and the connection is opened again, so the load keeps its schedule through the
failure and every request has an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contracts.stock_commands import ReceiveStock
from contracts.topics import STOCK_COMMANDS
from infra.kafka import raw_producer
from infra.settings import Settings

HEADERS = [("content-type", b"application/json")]
HTTP_TIMEOUT_S = 15.0
RECONNECT_PAUSE_S = 0.05  # between failed connection attempts, so a dead front door is not spun on


@dataclass(frozen=True, slots=True)
class Sample:
    """One command the load sent: through which path, when, and what came back."""

    path: str  # "http" or "kafka"
    sent_ns: int  # wall clock when it went out
    done_ns: int  # wall clock when its answer (or failure) came back
    acked: bool  # HTTP 202, or the broker's acknowledgement (acks=all)
    command_id: str | None  # the published id (HTTP: from the 202's body; Kafka: our own)
    detail: str = ""  # status code or error, when not acked


@dataclass(slots=True)
class Recorder:
    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)


def sku_of(prefix: str, i: int, skus: int) -> str:
    return f"{prefix}-{i % skus:04d}"


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    at = head.lower().find(b"content-length:")
    length = int(head[at + 15 : head.index(b"\r\n", at)]) if at >= 0 else 0
    return int(head[9:12]), await reader.readexactly(length)


async def send_http(
    port: int,
    token: str,
    *,
    prefix: str,
    skus: int,
    rate: float,
    deadline: float,
    connections: int,
    recorder: Recorder,
) -> None:
    """POST a receipt of 1 unit at `rate`/s until time.monotonic() reaches `deadline`, over `connections`
    keep-alive connections to 127.0.0.1:`port`; reconnect after any failure."""
    start = time.monotonic() + 0.2
    body = b'{"quantity":1}'

    async def connection(index: int) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        i = index
        while True:
            due = start + i / rate
            if due > deadline:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing the sender on its schedule
            sku = sku_of(prefix, i, skus)
            i += connections
            sent = time.time_ns()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), HTTP_TIMEOUT_S)
                reader, writer = conn
                writer.write(
                    (
                        f"POST /v1/items/{sku}/receipts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n"
                    ).encode()
                    + body
                )
                status, answer = await asyncio.wait_for(_read_answer(reader), HTTP_TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
                recorder.add(Sample("http", sent, time.time_ns(), False, None, type(error).__name__))
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
            command_id = json.loads(answer).get("command_id") if status == 202 else None
            recorder.add(Sample("http", sent, time.time_ns(), status == 202, command_id, str(status)))
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(connection(c) for c in range(connections)))


async def send_kafka(
    settings: Settings, *, prefix: str, skus: int, rate: float, deadline: float, recorder: Recorder
) -> None:
    """Publish ReceiveStock commands of 1 unit at `rate`/s until `deadline`, with the edge's producer
    settings (acks=all, idempotent, key = SKU); each is acknowledged when the broker's ack arrives."""
    producer = raw_producer(settings, client_id="drill-load")
    await producer.start()
    pending: set[asyncio.Task[None]] = set()

    async def one(sku: str) -> None:
        command = ReceiveStock(
            command_id=uuid.uuid4(),
            sku=sku,
            issued_at=datetime.now(UTC),
            actor="drill",
            source="drill",
            quantity=1,
        )
        sent = time.time_ns()
        try:
            ack = await producer.send(
                STOCK_COMMANDS.name, command.model_dump_json().encode(), key=sku.encode(), headers=HEADERS
            )
            await ack
        except Exception as error:  # any failure is an unacknowledged command, recorded
            recorder.add(Sample("kafka", sent, time.time_ns(), False, str(command.command_id), repr(error)))
            return
        recorder.add(Sample("kafka", sent, time.time_ns(), True, str(command.command_id)))

    try:
        start = time.monotonic() + 0.2
        i = 0
        while (due := start + i / rate) <= deadline:
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing the sender on its schedule
            task = asyncio.create_task(one(sku_of(prefix, i, skus)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        if pending:
            await asyncio.wait(pending)
    finally:
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await producer.stop()
