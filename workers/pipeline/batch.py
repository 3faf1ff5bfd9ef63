"""One batch of commands -> one PostgreSQL transaction, whatever the domain.

The domain session loads and locks the state the batch touches, decides each command with the pure rules
and says what changed; this module claims command ids, records outcomes and the outbox, and sends all of
the batch's writes as one statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Generic, NamedTuple, Protocol, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from db import command_log
from db import writes as db_writes
from db.command_log import OutboxRow, ProcessedRow
from db.writes import Write, present


class Command(Protocol):
    @property
    def command_id(self) -> uuid.UUID: ...
    @property
    def sku(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def issued_at(self) -> datetime: ...


class Event(Protocol):
    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def command_id(self) -> uuid.UUID | None: ...
    @property
    def sku(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def channel(self) -> str: ...
    def payload_json(self) -> str: ...


C = TypeVar("C", bound=Command)
C_contra = TypeVar("C_contra", bound=Command, contravariant=True)


class Verdict(NamedTuple):
    """What the rules made of one command: its events, and the rejection (`code: reason`) if rejected.
    A tuple: one is built per command."""

    events: Sequence[Event]
    rejection: str | None = None


class Session(Protocol[C_contra]):
    """A domain's view of one batch inside its transaction."""

    async def load(self, pg: asyncpg.Connection, commands: Sequence[C_contra]) -> None: ...
    def decide(self, command: C_contra, now: datetime) -> Verdict: ...
    def save(self, now: datetime) -> list[Write]: ...


@dataclass(slots=True)
class BatchReport(Generic[C]):
    applied: list[C] = field(default_factory=list)
    rejected: list[tuple[C, str]] = field(default_factory=list)
    duplicates: list[C] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def add(self, other: BatchReport[C]) -> None:
        """Another report's outcomes after these (a batch applied in parts); every list, so none is lost."""
        for f in fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))


def first_seen(commands: Sequence[C], seen: set[uuid.UUID]) -> tuple[list[C], list[C]]:
    """Split into commands to apply and duplicates (already processed, or repeated within the batch)."""
    fresh: list[C] = []
    duplicates: list[C] = []
    for command in commands:
        if command.command_id in seen:
            duplicates.append(command)
        else:
            seen.add(command.command_id)
            fresh.append(command)
    return fresh, duplicates


def outbox_row(event: Event, now: datetime) -> OutboxRow:
    return OutboxRow(event.event_id, event.type, event.channel, event.sku, event.payload_json(), now)


async def apply_batch(
    engine: AsyncEngine,
    session: Session[C],
    commands: Sequence[C],
    now: datetime,
    *,
    look_up_seen: bool = True,
) -> BatchReport[C]:
    """Apply `commands` (in partition order) in one transaction: claim ids, state, outcomes, outbox.

    `look_up_seen=False` skips reading which ids are already processed: a batch with such an id then fails
    on a key derived from it, with nothing applied (see `apply_claiming`)."""
    report: BatchReport[C] = BatchReport()
    async with command_log.transaction(engine) as pg:
        ids = [c.command_id for c in commands] if look_up_seen else []
        already = await command_log.seen_command_ids(pg, ids)
        fresh, report.duplicates = first_seen(commands, already)
        await session.load(pg, fresh)
        processed: list[ProcessedRow] = []
        for command in fresh:
            verdict = session.decide(command, now)
            report.events.extend(verdict.events)
            if verdict.rejection is None:
                report.applied.append(command)
            else:
                report.rejected.append((command, verdict.rejection))
            status = "applied" if verdict.rejection is None else "rejected"
            processed.append(
                ProcessedRow(
                    command.command_id,
                    command.type,
                    command.sku,
                    status,
                    verdict.rejection,
                    now,
                    command.actor,
                    command.issued_at,
                )
            )
        # One round trip for every write of the batch (and the relay's wake-up).
        outbox = [outbox_row(e, now) for e in report.events]
        writes = [
            *session.save(now),
            *present(command_log.insert_processed(processed), command_log.insert_outbox(outbox)),
        ]
        await db_writes.send(pg, writes)
    return report


async def apply_claiming(
    engine: AsyncEngine, new_session: Callable[[], Session[C]], commands: Sequence[C], now: datetime
) -> BatchReport[C]:
    """`apply_batch` without the look-up of processed ids, which is a round trip of the five a batch
    costs, while a batch holds an id seen before only after a crash or a rebalance. Such a batch fails with
    a unique violation (on processed_commands or on an event id derived from the command id, whichever
    write PostgreSQL runs first), or with a short claim count for an id claimed in another time partition
    (db/command_log.insert_processed), and is applied again at once, with the look-up; a unique violation
    then is a real one, for the caller's retries."""
    try:
        return await apply_batch(engine, new_session(), commands, now, look_up_seen=False)
    except (asyncpg.UniqueViolationError, db_writes.WriteCountMismatch):
        return await apply_batch(engine, new_session(), commands, now)
