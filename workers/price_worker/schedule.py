"""Price windows start and end through ActivateScheduledPrice / ExpireScheduledPrice commands."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from contracts.price_commands import ActivateScheduledPrice, ExpireScheduledPrice
from db import price_repo
from workers.pipeline.scheduler import Schedule

SCHEDULE_NAMESPACE = uuid.UUID("3f9a1c2e-6b4d-4e8f-9a0b-7c6d5e4f3a2b")
SCHEDULER_LOCK_KEY = 0x1A7E_9A1C


def window_command(
    change_id: uuid.UUID, sku: str, action: str, now: datetime
) -> ActivateScheduledPrice | ExpireScheduledPrice:
    kind = ActivateScheduledPrice if action == "activate" else ExpireScheduledPrice
    return kind(
        command_id=uuid.uuid5(SCHEDULE_NAMESPACE, f"{action}:{change_id}"),
        sku=sku,
        issued_at=now,
        actor="price-scheduler",
        source="price-worker",
        change_id=change_id,
    )


async def due(pg: asyncpg.Connection, now: datetime) -> list[ActivateScheduledPrice | ExpireScheduledPrice]:
    return [
        window_command(cid, sku, action, now) for cid, sku, action in await price_repo.due_windows(pg, 1000)
    ]


def schedule(interval_s: float) -> Schedule:
    return Schedule("price-windows", SCHEDULER_LOCK_KEY, due, interval_s)
