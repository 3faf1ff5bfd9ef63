"""Which failures wait and which are isolated, and the narrowing-down of a batch to its failing commands.

An outage (PostgreSQL or Kafka unreachable, shutting down, timing out) and contention (deadlock,
serialization failure, lock timeout, the lost race on a command id) pass: they WAIT, with back-off, and
lose nothing. Anything else that fails a batch again and again is deterministic: a rule that raises, a value
PostgreSQL refuses (class 22/23, or another class such as 54 program limits), an encoding error in the
driver. The batch is bisected down to the commands that fail alone; those are dead-lettered with the
exception's type and message and everything else applies (Spring Kafka's DefaultErrorHandler and Kafka
Connect's errors.tolerance do the same).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal

import stamina
import structlog

from workers.intake import Decoded, Invalid, Record
from workers.pipeline.batch import BatchReport, C
from workers.pipeline.failures import is_outage, sqlstate

log = structlog.get_logger("invmon.worker")

Kind = Literal["wait", "refused", "deterministic"]

# Tries of a batch that fails deterministically before it is narrowed down.
DETERMINISTIC_ATTEMPTS = 2
# Tries of a batch that meets an outage or contention before its partitions are paused (consumer.py's
# PartitionGate backs off from there): together about 0.35 s, so other partitions wait at most that long.
WAIT_ATTEMPTS = 3
WAIT_INITIAL_S = 0.05
WAIT_MAX_S = 0.2

# The lost race on a command id (a unique violation: the next attempt finds it processed) waits too.
_LOST_RACE = "23505"
_CONTENTION_CODES = frozenset({"40001", "40P01", "55P03", "57014", _LOST_RACE})
# Waits that already took their time (a lock or statement timeout): not tried again in place.
_TIMED_OUT_CODES = frozenset({"55P03", "57014"})


def refused_by_database(error: BaseException) -> bool:
    """PostgreSQL refused what a command carries: a data exception (SQLSTATE class 22) or an integrity
    violation (class 23). No attempt cures these. A unique violation is left out: it is the lost race on a
    command id, which the next attempt skips."""
    code = sqlstate(error)
    return code is not None and code[:2] in ("22", "23") and code != _LOST_RACE


def failure_kind(error: BaseException) -> Kind:
    if is_outage(error) or sqlstate(error) == _LOST_RACE:
        return "wait"
    return "refused" if refused_by_database(error) else "deterministic"


def contention(error: BaseException) -> bool:
    """A wait that is about some rows, not the database: other partitions' commands may well apply."""
    return sqlstate(error) in _CONTENTION_CODES


def reason(error: BaseException) -> str:
    if refused_by_database(error):
        return f"refused by PostgreSQL ({sqlstate(error)}): {error}"
    return f"failed: {type(error).__name__}: {error}"


class Waiting(Exception):
    """Commands from `index` on could not be applied because of an outage or contention."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"waiting from command {index}: {cause!r}")
        self.index = index
        self.cause = cause


@dataclass(slots=True)
class Outcome(Generic[C]):
    """What became of a batch's valid commands: applied/rejected/duplicates, the ones that failed
    deterministically (to dead-letter), and the records of those that wait (unresolved)."""

    report: BatchReport[C] = field(default_factory=BatchReport)
    failed: list[Invalid] = field(default_factory=list)
    unresolved: list[Record] = field(default_factory=list)
    wait_cause: BaseException | None = None

    def add(self, other: Outcome[C]) -> None:
        self.report.add(other.report)
        self.failed.extend(other.failed)
        self.unresolved.extend(other.unresolved)
        self.wait_cause = self.wait_cause or other.wait_cause


async def with_wait_retries(apply: Any, commands: Sequence[C], retries: Any) -> BatchReport[C]:
    """`apply(commands)`, tried again on an outage or contention a few times (briefly: a longer wait is the
    paused partition's back-off)."""
    async for attempt in stamina.retry_context(
        on=lambda e: failure_kind(e) == "wait" and sqlstate(e) not in _TIMED_OUT_CODES,
        attempts=WAIT_ATTEMPTS,
        wait_initial=WAIT_INITIAL_S,
        wait_max=WAIT_MAX_S,
    ):
        with attempt:
            if attempt.num > 1:
                retries()
            result: BatchReport[C] = await apply(commands)
            return result
    raise RuntimeError("retry loop ended without a result")


async def apply_isolating(apply: Any, decoded: Decoded[C], retries: Any) -> Outcome[C]:
    """Apply the batch; on a deterministic failure, narrow it down (bisect, in partition order) to the
    commands that fail alone. `apply(commands) -> BatchReport` is one transaction. Contention that
    persists (a row locked elsewhere) splits a batch of several partitions into one transaction per
    partition, so that only the partitions whose rows are locked wait."""
    commands: list[C] = decoded.valid
    outcome: Outcome[C] = Outcome()
    if not commands:
        return outcome
    error: BaseException | None = None
    for _ in range(DETERMINISTIC_ATTEMPTS):
        try:
            outcome.report = await with_wait_retries(apply, commands, retries)
            return outcome
        except Exception as failure:
            error = failure
            kind = failure_kind(failure)
            if kind == "wait":
                partitions = by_partition(decoded)
                if contention(failure) and len(partitions) > 1:
                    log.warning("batch_contended_splitting", partitions=len(partitions), error=repr(failure))
                    for part in partitions:
                        outcome.add(await apply_isolating(apply, part, retries))
                    return outcome
                outcome.unresolved, outcome.wait_cause = list(decoded.sources), failure
                return outcome
            if kind == "refused":
                break
    log.warning("batch_failing_narrowing_down", commands=len(commands), error=repr(error))
    try:
        await _bisect(apply, commands, decoded.sources, error, outcome, retries)
    except Waiting as waiting:
        outcome.unresolved, outcome.wait_cause = list(decoded.sources[waiting.index :]), waiting.cause
    return outcome


def by_partition(decoded: Decoded[C]) -> list[Decoded[C]]:
    """The batch's commands per partition, each in its order."""
    parts: dict[tuple[str, int], Decoded[C]] = {}
    for command, record in zip(decoded.valid, decoded.sources, strict=True):
        part = parts.setdefault((record.topic, record.partition), Decoded([], [], []))
        part.valid.append(command)
        part.sources.append(record)
    return list(parts.values())


async def _bisect(
    apply: Any,
    commands: list[C],
    sources: Sequence[Record],
    error: BaseException | None,
    outcome: Outcome[C],
    retries: Any,
) -> None:
    # Ranges in partition order; a range known to fail carries its error. Left before right, so every
    # command is resolved (applied, rejected or dead-lettered) before the ones after it.
    pending: deque[tuple[int, int, BaseException | None]] = deque([(0, len(commands), error)])
    while pending:
        lo, hi, known = pending.popleft()
        if known is None:
            try:
                outcome.report.add(await with_wait_retries(apply, commands[lo:hi], retries))
                continue
            except Exception as failure:
                if failure_kind(failure) == "wait":
                    raise Waiting(lo, failure) from failure
                known = failure
        if hi - lo == 1:
            outcome.failed.append(Invalid(sources[lo], reason(known), commands[lo].command_id))
            continue
        mid = (lo + hi) // 2
        pending.appendleft((mid, hi, None))
        pending.appendleft((lo, mid, None))
