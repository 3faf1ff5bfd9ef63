"""A transaction begun on the asyncpg driver and left open (its rollback cut short by a cancellation, as when
a client leaves a streamed export) must not reach the next user of the pooled connection."""

from __future__ import annotations

import pytest

from db.command_log import driver
from db.engine import make_engine
from infra.settings import Settings

pytestmark = pytest.mark.stack


async def test_a_connection_left_in_a_failed_driver_transaction_is_not_handed_out_again(
    stack: Settings,
) -> None:
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            pg = await driver(conn)
            await pg.transaction().start()
            with pytest.raises(Exception, match="division by zero"):
                await pg.execute("SELECT 1/0")
            # No rollback: the transaction stays aborted as the connection goes back to the pool.
        async with engine.connect() as conn:
            pg = await driver(conn)
            assert not pg.is_in_transaction()
            assert await pg.fetchval("SELECT 1") == 1
    finally:
        await engine.dispose()
