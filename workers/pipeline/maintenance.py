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


def processed_retention_problem(
    settings: Settings, topic: str, configs: dict[str, dict[str, str]]
) -> str | None:
    """Why processed_commands would forget ids the command topic can still redeliver, in one line; None
    when the retention covers the topic's plus a margin (a tenth of it, at least a minute)."""
    raw = configs.get(topic, {}).get("retention.ms")
    if raw is None:
        return None  # the topic does not exist yet: `invmon topics` creates it with the broker default
    topic_s = int(raw) // 1000
    if topic_s < 0:
        return (
            f"{topic} keeps records for ever (retention.ms=-1): no INVMON_RETENTION_PROCESSED_S covers its"
            " redeliveries; give the topic a retention.ms"
        )
    needed = topic_s + max(60, topic_s // 10)
    if settings.retention_processed_s < needed:
        return (
            f"INVMON_RETENTION_PROCESSED_S={settings.retention_processed_s} is shorter than {topic}'s"
            f" retention.ms ({topic_s} s) plus a margin: set it to at least {needed}"
        )
    return None
