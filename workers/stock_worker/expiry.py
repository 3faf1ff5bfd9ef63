"""Reservations whose expiry has passed are released through ExpireReservation commands."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from contracts.stock_commands import ExpireReservation
from db import stock_repo
from workers.pipeline.scheduler import Schedule

EXPIRY_NAMESPACE = uuid.UUID("8d3c6f0e-2f7b-4b8e-a1f6-3d0c9e7b5a21")
SCHEDULER_LOCK_KEY = 0x1A7E_0E1F


def expire_command(reservation_id: str, sku: str, now: datetime) -> ExpireReservation:
    return ExpireReservation(
        command_id=uuid.uuid5(EXPIRY_NAMESPACE, f"{sku}/{reservation_id}"),
        sku=sku,
        issued_at=now,
        actor="reservation-expiry",
        source="stock-worker",
        reservation_id=reservation_id,
    )


async def due(pg: asyncpg.Connection, now: datetime) -> list[ExpireReservation]:
    return [expire_command(rid, sku, now) for rid, sku in await stock_repo.due_reservations(pg, 1000)]


def schedule(interval_s: float) -> Schedule:
    return Schedule("reservation-expiry", SCHEDULER_LOCK_KEY, due, interval_s)
