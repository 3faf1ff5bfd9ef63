"""db.read_engine against a real hot standby (pg_basebackup, streaming replication): lag-tolerant reads
go to the standby, a caught-up read (relay snapshots) never returns rows older than the primary's state
when it began, and a stopped standby falls back to the primary until it is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from db import read_engine
from db.engine import make_engine
from db.read_engine import READ_FALLBACKS, ReadEngine
from tests.integration.helpers import wait_until
from tests.integration.pg_standby import Pair, primary_and_standby

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with primary_and_standby() as started:
        yield started


@pytest.fixture
async def reads(pair: Pair) -> AsyncIterator[ReadEngine]:
    primary = make_engine(pair.primary_url)
    engine = ReadEngine.build(primary, pair.standby_url)
    async with primary.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS marks (id int PRIMARY KEY)"))

    async def replayed() -> object:
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT to_regclass('marks')"))

    # The tests below delay the standby's replay: the table itself must be there first.
    await wait_until(replayed, lambda found: found is not None, within=30, what="marks on the standby")
    try:
        yield engine
    finally:
        await engine.dispose()
        await primary.dispose()


async def on_standby(conn: AsyncConnection) -> bool:
    return bool(await conn.scalar(text("SELECT pg_is_in_recovery()")))


async def seen(conn: AsyncConnection, mark: int) -> bool:
    return bool(await conn.scalar(text("SELECT count(*) FROM marks WHERE id = :id"), {"id": mark}))


async def apply_delay(pair: Pair, delay: str) -> None:
    conn = await pair.standby_superuser()
    try:
        await conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def fallbacks(reason: str) -> float:
    return READ_FALLBACKS.labels(reason)._value.get()


async def test_reads_go_to_the_standby(reads: ReadEngine) -> None:
    async with reads.connect() as conn:
        assert await on_standby(conn)
    await reads.check_replica()


async def test_a_caught_up_read_never_misses_what_the_primary_had_committed(
    pair: Pair, reads: ReadEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await apply_delay(pair, "3s")  # the standby applies every commit 3 s late
    try:
        async with reads.primary.begin() as conn:
            await conn.execute(text("INSERT INTO marks VALUES (1)"))
        async with reads.connect() as conn:  # lag-tolerant: the standby, without the row yet
            assert await on_standby(conn)
            assert not await seen(conn, 1)
        behind = fallbacks("behind")
        async with reads.connect_caught_up() as conn:  # 0.5 s is not enough: the primary answers
            assert not await on_standby(conn)
            assert await seen(conn, 1)
        assert fallbacks("behind") == behind + 1
        async with reads.primary.begin() as conn:
            await conn.execute(text("INSERT INTO marks VALUES (2)"))
        monkeypatch.setattr(read_engine, "CATCH_UP_WAIT_S", 15.0)
        async with reads.connect_caught_up() as conn:  # waits for the replay, then reads the standby
            assert await on_standby(conn)
            assert await seen(conn, 2)
    finally:
        await apply_delay(pair, "0")


async def test_a_stopped_standby_falls_back_to_the_primary_until_it_is_back(
    pair: Pair, reads: ReadEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "_retry_after_s", 0.0)  # try the standby again on every read
    await pair.stop_standby()
    try:
        unreachable = fallbacks("unreachable")
        async with reads.connect() as conn:
            assert not await on_standby(conn)
        async with reads.connect_caught_up() as conn:
            assert not await on_standby(conn)
        assert fallbacks("unreachable") >= unreachable + 2
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the driver raises: not ready
            await reads.check_replica()
    finally:
        await pair.start_standby()

    async def back() -> None:
        while True:
            try:
                await reads.check_replica()
                return
            except Exception:
                await asyncio.sleep(0.1)  # poll interval while the standby starts

    await asyncio.wait_for(back(), 60)
    async with reads.connect() as conn:
        assert await on_standby(conn)
