"""`GET /v1/admin/operations`: what the admins' operations page shows. The figures come from the same
reads as the metrics and `invmon status` (db.ops_reads, infra.consumer_lag), so the three never disagree."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request

from api_edge.auth import require
from api_edge.state import clients
from contracts.operations import FailingDelivery, Operations, OutboxBacklog, PartitionLag
from db import ops_reads
from db.command_log import transaction
from infra.consumer_lag import consumer_lag

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require("admin"))])
FAILING_LIMIT = 50
LAG_TIMEOUT_S = 5.0


async def _lag(request: Request) -> tuple[list[PartitionLag], str | None]:
    # Kafka being down is exactly when an operator opens this page: answer with the database's half.
    try:
        async with asyncio.timeout(LAG_TIMEOUT_S):
            found = await consumer_lag(clients(request).settings)
    except (KafkaError, OSError, TimeoutError) as error:
        return [], f"consumer lag unavailable: {type(error).__name__}: {error}"[:300]
    return [PartitionLag(**dataclasses.asdict(p)) for p in found], None


@router.get("/operations")
async def get_operations(request: Request) -> Operations:
    """Consumer lag per group and partition, the outbox backlog and its oldest row's age, dead letters by
    reason and the failing notification deliveries. Read on each call; the page polls it."""
    lag, lag_error = await _lag(request)
    async with transaction(clients(request).engine) as conn:
        backlog = await ops_reads.outbox_backlog(conn)
        dead = await ops_reads.dead_letters_by_reason(conn)
        failing = await ops_reads.failing_deliveries(conn, FAILING_LIMIT)
    return Operations(
        generated_at=datetime.now(UTC),
        consumer_lag=lag,
        lag_error=lag_error,
        outbox=OutboxBacklog(**dataclasses.asdict(backlog)),
        dead_letters_by_reason=dead,
        failing_deliveries=[FailingDelivery(**dataclasses.asdict(f)) for f in failing],
    )
