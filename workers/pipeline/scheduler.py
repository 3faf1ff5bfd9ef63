"""Time-driven commands (reservation expiry, price window start/end), published like any other command.

A due item becomes a command whose id derives from the item and the action, so any number of workers or
restarts publishing it again only produce duplicates that the idempotency table drops: exactly once.
A transaction-scoped advisory lock keeps concurrent workers from publishing the same round at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from db import command_log

log = structlog.get_logger("invmon.scheduler")

Due = Callable[[asyncpg.Connection, datetime], Awaitable[Sequence[Any]]]
Publish = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    lock_key: int
    due: Due  # returns the commands to publish now
    interval_s: float


async def publish_due(engine: AsyncEngine, schedule: Schedule, publish: Publish, now: datetime) -> int:
    async with command_log.transaction(engine) as pg:
        if not await pg.fetchval("SELECT pg_try_advisory_xact_lock($1)", schedule.lock_key):
            return 0
        # The database's clock decided what is due, so the commands carry its time: a worker whose clock
        # lags must not refuse them as "not yet due" (their ids are fixed; a refusal would be final).
        db_now: datetime = await pg.fetchval("SELECT now()")
        commands = await schedule.due(pg, max(now, db_now))
        for command in commands:
            await publish(command)
    return len(commands)


async def run(
    engine: AsyncEngine, schedule: Schedule, publish: Publish, clock: Callable[[], datetime]
) -> None:
    while True:
        try:
            count = await publish_due(engine, schedule, publish, clock())
            if count:
                log.info("scheduled_commands_published", schedule=schedule.name, count=count)
        except Exception as error:  # a scheduler must outlive a database or broker blip
            log.warning("schedule_round_failed", schedule=schedule.name, error=repr(error))
        await asyncio.sleep(schedule.interval_s)
