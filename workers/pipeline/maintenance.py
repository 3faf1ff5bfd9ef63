"""Partition maintenance as one of the worker's schedules: the scheduler's advisory lock makes one worker
at a time create partitions ahead and drop expired ones (db/partitions.py); it publishes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from db import partitions
from infra.settings import Settings
from workers.pipeline.scheduler import Schedule


def schedule(settings: Settings) -> Schedule:
    async def due(pg: asyncpg.Connection, now: datetime) -> list[Any]:
        await partitions.maintain(pg, settings, now)
        return []

    return Schedule(
        "partition-maintenance",
        partitions.MAINTENANCE_LOCK_KEY,
        due,
        settings.partition_maintenance_interval_s,
    )
