"""Which failures make a consumer wait (an outage) and which are narrowed down to the record or event that
causes them (workers/pipeline/failures.py, shared by the command workers and the notifier)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from workers.pipeline.failures import is_outage


def wrapped(orig: BaseException, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("INSERT ...", None, orig, connection_invalidated=invalidated)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("too many clients"),
        asyncpg.AdminShutdownError("terminating connection"),
        asyncpg.DeadlockDetectedError("deadlock"),
        asyncpg.SerializationError("could not serialize"),
        asyncpg.LockNotAvailableError("lock timeout"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.UndefinedColumnError("column does not exist"),  # a schema this code does not match
        asyncpg.InsufficientPrivilegeError("permission denied"),
        PoolTimeout("QueuePool limit reached"),
        wrapped(OSError("reset by peer")),
        wrapped(Exception("gone"), invalidated=True),
    ],
)
def test_outages_wait(error: BaseException) -> None:
    assert is_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.InvalidTextRepresentationError("invalid input syntax for type json"),
        asyncpg.StringDataRightTruncationError("value too long for type character varying(64)"),
        IntegrityError("INSERT ...", None, asyncpg.CheckViolationError("check")),  # type: ignore[arg-type]
        KeyError("sku"),
        ValueError("a bug"),
    ],
)
def test_everything_else_is_narrowed_down(error: BaseException) -> None:
    assert not is_outage(error)
