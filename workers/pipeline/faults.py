"""A test-only fault: a rule that raises for chosen SKUs, to prove deterministic failures are isolated.

Read once at registration from an environment variable that no deployment sets; unset, the session factory
is returned as it is, so the fast path does not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from db.writes import Write
from workers.pipeline.batch import C, Session, Verdict

RULE_RAISES_ENV = "INVMON_TEST_RULE_RAISES_FOR_SKU_PREFIX"


class RuleFault(RuntimeError):
    """Raised by the test fault; stands for any rule that raises on a rare input."""


class _Faulty:
    def __init__(self, inner: Session[Any], prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    async def load(self, pg: Any, commands: Sequence[Any]) -> None:
        await self._inner.load(pg, commands)

    def decide(self, command: Any, now: datetime) -> Verdict:
        if command.sku.startswith(self._prefix):
            raise RuleFault(f"test rule fault for {command.sku}")
        return self._inner.decide(command, now)

    def save(self, now: datetime) -> list[Write]:
        return self._inner.save(now)


def with_rule_fault(session: Callable[[], Session[C]]) -> Callable[[], Session[C]]:
    prefix = os.environ.get(RULE_RAISES_ENV)
    if not prefix:
        return session
    return lambda: _Faulty(session(), prefix)
