"""Releases reservations whose expiry has passed, by publishing ExpireReservation commands.

The command goes through the same topic and transaction as every other, so the effect is exactly once:
its id derives from the reservation id, and any number of workers or restarts publishing it again only
produce duplicates that the idempotency table drops. An advisory lock keeps concurrent workers from
publishing the same batch at the same moment.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.stock_commands import ExpireReservation
from db import command_log, stock_repo

log = structlog.get_logger("invmon.stock_worker.expiry")

EXPIRY_NAMESPACE = uuid.UUID("8d3c6f0e-2f7b-4b8e-a1f6-3d0c9e7b5a21")
SCHEDULER_LOCK_KEY = 0x1A7E_0E1F

Publish = Callable[[ExpireReservation], Awaitable[None]]


def expire_command(reservation_id: str, sku: str, now: datetime) -> ExpireReservation:
    return ExpireReservation(
        command_id=uuid.uuid5(EXPIRY_NAMESPACE, f"{sku}/{reservation_id}"),
        sku=sku,
        issued_at=now,
        actor="reservation-expiry",
        source="stock-worker",
        reservation_id=reservation_id,
    )


async def publish_due(engine: AsyncEngine, publish: Publish, now: datetime, limit: int = 1000) -> int:
    """One round: publish an expiry command for every due reservation (if no other worker holds the lock)."""
    async with engine.begin() as conn:
        pg = await command_log.driver(conn)
        if not await pg.fetchval("SELECT pg_try_advisory_xact_lock($1)", SCHEDULER_LOCK_KEY):
            return 0
        due = await stock_repo.due_reservations(pg, limit)
        for reservation_id, sku in due:
            await publish(expire_command(reservation_id, sku, now))
    return len(due)


async def run(
    engine: AsyncEngine, publish: Publish, clock: Callable[[], datetime], interval_s: float
) -> None:
    while True:
        try:
            count = await publish_due(engine, publish, clock())
            if count:
                log.info("reservations_expiring", count=count)
        except Exception as error:  # the scheduler must outlive a database or broker blip
            log.warning("expiry_round_failed", error=repr(error))
        await asyncio.sleep(interval_s)
