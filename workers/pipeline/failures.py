"""One answer, for every consumer and loop, to: is this failure an outage (wait and lose nothing), or may
it be the input's fault (narrow it down and isolate what fails alone)?"""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLSTATE classes and codes that say PostgreSQL cannot work right now, whatever the input: connection
# exceptions, insufficient resources, operator intervention (shutdown, cancelled by a timeout), system
# errors, transaction rollbacks (serialization failures, deadlocks), lock timeouts and objects in use; and
# a database that is not what this code expects (class 42: an undefined table or column, a missing
# privilege; 28: a refused login; 3D: no such database): every command or event would fail alike, and
# isolating them would dead-letter them all until an operator acts.
OUTAGE_CLASSES = frozenset({"08", "53", "57", "58", "40", "42", "28", "3D"})
OUTAGE_CODES = frozenset({"55P03", "55006"})
OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # refused and reset connections
    TimeoutError,
    KafkaError,
    asyncpg.InterfaceError,  # a connection lost
    asyncpg.InternalClientError,  # the driver's protocol state after a dropped connection
    PoolTimeout,  # the pool had no connection to give
)


def _chain(error: BaseException) -> list[BaseException]:
    """The error, what SQLAlchemy wrapped (`orig`) and what it was raised from, in that order."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = getattr(current, "orig", None) or current.__cause__
    return seen


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of an error, unwrapped from SQLAlchemy's DBAPIError when it went through it."""
    for candidate in _chain(error):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def is_outage(error: BaseException) -> bool:
    for candidate in _chain(error):
        if isinstance(candidate, OUTAGE_TYPES):
            return True
        if isinstance(candidate, DBAPIError) and candidate.connection_invalidated:
            return True
    code = sqlstate(error)
    return code is not None and (code[:2] in OUTAGE_CLASSES or code in OUTAGE_CODES)
