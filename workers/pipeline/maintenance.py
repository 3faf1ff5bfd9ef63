"""Partition maintenance in the command workers: every INVMON_PARTITION_MAINTENANCE_INTERVAL_S a round
creates partitions ahead and drops expired ones (db/partitions.py). Both workers run it; the advisory lock
lets one process at a time work on a table. Not a scheduler.Schedule: a Schedule's round is one transaction,
which would hold every table's DDL lock until the last table is done."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from db import command_log, partitions
from infra.settings import Settings

log = structlog.get_logger("invmon.partitions")


async def run(engine: AsyncEngine, settings: Settings) -> None:
    while True:
        try:
            async with engine.connect() as conn:
                await partitions.maintain(await command_log.driver(conn), settings)
        except Exception as error:  # like the scheduler: maintenance must outlive a database blip
            log.warning("partition_maintenance_failed", error=repr(error))
        await asyncio.sleep(settings.partition_maintenance_interval_s)


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
