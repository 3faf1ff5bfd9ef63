"""The overview strip's and the operations page's API against the real pipeline: the figures move when the
pipeline does (an item goes out of stock, a command is finished, a bad record is dead-lettered)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts.topics import STOCK_COMMANDS
from infra.settings import Settings
from tests.e2e.support import new_sku, wait_for_status
from tests.integration.helpers import wait_until

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


async def overview(edge: httpx.AsyncClient) -> dict[str, Any]:
    response = await edge.get("/v1/overview")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def operations(edge: httpx.AsyncClient) -> dict[str, Any]:
    response = await edge.get("/v1/admin/operations")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_overview_counts_alert_states_and_finished_commands(
    edge: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    first = await overview(edge)
    assert set(first["items_by_alert_state"]) >= {"ok", "low", "out", "over"}
    assert (first["window_s"], first["bucket_s"]) == (600, 10)
    assert len(first["commands"]) == 59, "whole 10 s buckets of the last ten minutes, empty ones too"

    sku = new_sku()
    sent = await edge.post("/v1/items", json={"sku": sku, "name": "Strip", "min_stock_level": 5})
    assert sent.status_code == 202, sent.text
    command_id = sent.json()["command_id"]
    assert (await wait_for_status(edge, command_id))["status"] == "applied"
    applied_at: datetime = await db.fetchval(
        "SELECT applied_at FROM processed_commands WHERE command_id = $1::uuid", command_id
    )
    bucket = await db.fetchval(
        "SELECT date_bin(interval '10 seconds', $1::timestamptz, timestamptz 'epoch')", applied_at
    )

    def counted(body: dict[str, Any]) -> bool:
        return any(
            datetime.fromisoformat(b["start"]) == bucket and b["commands"] >= 1 for b in body["commands"]
        )

    # The bucket is shown once it is whole (at most 10 s after the command).
    later = await wait_until(lambda: overview(edge), counted, within=30, what="the command's bucket")
    assert later["items_by_alert_state"]["out"] >= first["items_by_alert_state"]["out"] + 1
    hit = next(b for b in later["commands"] if datetime.fromisoformat(b["start"]) == bucket)
    assert hit["per_second"] == hit["commands"] / 10


async def test_operations_show_lag_backlog_and_dead_letters(edge: httpx.AsyncClient, stack: Settings) -> None:
    first = await operations(edge)
    assert first["lag_error"] is None
    groups = {p["group"] for p in first["consumer_lag"]}
    assert stack.stock_consumer_group in groups
    assert first["outbox"]["unpublished"] >= 0
    undecodable = first["dead_letters_by_reason"].get("undecodable", 0)

    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(STOCK_COMMANDS.name, b"{not json", key=new_sku().encode())
    finally:
        await producer.stop()
    await wait_until(
        lambda: operations(edge),
        lambda body: body["dead_letters_by_reason"].get("undecodable", 0) == undecodable + 1,
        within=30,
        what="the bad record on the operations page",
    )


async def test_operations_are_for_admins_only(stack: Settings, pipeline: object) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.edge_port}") as anonymous:
        response = await anonymous.get("/v1/admin/operations")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
