"""Which failures wait and which are isolated (workers/pipeline/isolation.py), and dead letters by
reference (workers/intake.py)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError

from infra.kafka import DLQ_TOPIC_MAX_BYTES, dlq_cannot_carry, record_size
from workers.intake import Invalid, by_reference, readable_identity
from workers.pipeline.isolation import failure_kind, reason


def pg_error(cls: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    return cls.new({"C": cls.sqlstate, "M": "boom"})


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConnectionRefusedError(), "wait"),
        (TimeoutError(), "wait"),
        (KafkaConnectionError(), "wait"),
        (asyncpg.ConnectionDoesNotExistError("gone"), "wait"),
        (pg_error(asyncpg.AdminShutdownError), "wait"),
        (pg_error(asyncpg.CannotConnectNowError), "wait"),
        (pg_error(asyncpg.DeadlockDetectedError), "wait"),
        (pg_error(asyncpg.UniqueViolationError), "wait"),
        (pg_error(asyncpg.QueryCanceledError), "wait"),
        # A database this code does not match (no migration, no privilege): every command would fail alike.
        (pg_error(asyncpg.UndefinedTableError), "wait"),
        (pg_error(asyncpg.InsufficientPrivilegeError), "wait"),
        (pg_error(asyncpg.CheckViolationError), "refused"),
        (pg_error(asyncpg.DatetimeFieldOverflowError), "refused"),
        (pg_error(asyncpg.ProgramLimitExceededError), "deterministic"),
        (RuntimeError("a rule raised"), "deterministic"),
        (OverflowError("date value out of range"), "deterministic"),
        (UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates"), "deterministic"),
    ],
)
def test_failure_kinds(error: BaseException, kind: str) -> None:
    assert failure_kind(error) == kind


def test_reason_names_the_exception() -> None:
    assert reason(RuntimeError("no")) == "failed: RuntimeError: no"
    assert reason(pg_error(asyncpg.CheckViolationError)).startswith("refused by PostgreSQL (23514)")


@dataclass
class FakeRecord:
    topic: str = "t"
    partition: int = 3
    offset: int = 7
    key: bytes | None = b"SKU-1"
    value: bytes | None = b""
    headers: tuple[tuple[str, bytes], ...] = ()


def test_a_record_too_large_travels_by_reference() -> None:
    value = b"x" * 100_000
    record = FakeRecord(value=value, headers=(("a", b"1"), ("big", b"y" * 5000)))
    assert record_size(record.key, record.value, record.headers) > 50_000
    preview, headers = by_reference(Invalid(record, "too big"))
    h = dict(headers)
    assert preview == value[:1024]
    assert h["x-dlq-by-reference"] == b"true"
    assert h["x-origin-size"] == b"100000"
    assert h["x-origin-sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert h["x-origin-offset"] == b"7"
    assert "a" in h
    assert "big" not in h  # headers only up to the first KiB


def test_readable_identity() -> None:
    command_id = uuid.uuid4()
    assert readable_identity(f'{{"command_id": "{command_id}", "x": 1}}'.encode()) == (command_id, None)
    named = f'{{"command_id": "{command_id}", "actor": "user:a"}}'.encode()
    assert readable_identity(named) == (command_id, "user:a")
    assert readable_identity(b"not json") == (None, None)
    assert readable_identity(b'{"command_id": "nope", "actor": 7}') == (None, None)
    assert readable_identity(b"[1]") == (None, None)


def test_the_dlq_must_carry_what_the_command_topic_accepts() -> None:
    fine = {"c": {"max.message.bytes": "1048588"}, "d": {"max.message.bytes": str(DLQ_TOPIC_MAX_BYTES)}}
    assert dlq_cannot_carry(fine, "c", "d") is None
    small = {"c": {"max.message.bytes": "1048588"}, "d": {"max.message.bytes": "1048588"}}
    problem = dlq_cannot_carry(small, "c", "d")
    assert problem is not None
    assert "d max.message.bytes=1048588" in problem
    assert "\n" not in problem
    assert dlq_cannot_carry({"c": {}}, "c", "d") == "topic(s) d not found"
