"""Rejections shared by every domain: the typed reason a command is refused, and its announcement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contracts.stock_events import CommandRejected, RejectionCode


class _Command(Protocol):
    @property
    def command_id(self) -> uuid.UUID: ...
    @property
    def sku(self) -> str: ...
    @property
    def type(self) -> str: ...


class Reject(Exception):
    """Raised inside the rules to refuse a command; `decide` turns it into a `Rejected` outcome."""

    def __init__(self, code: RejectionCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rejected:
    code: RejectionCode
    reason: str
    event: CommandRejected


def rejected(command: _Command, now: datetime, refusal: Reject) -> Rejected:
    event = CommandRejected(
        event_id=uuid.uuid5(command.command_id, "0"),
        sku=command.sku,
        occurred_at=now,
        command_id=command.command_id,
        command_type=command.type,
        code=refusal.code,
        reason=refusal.reason,
    )
    return Rejected(refusal.code, refusal.reason, event)
