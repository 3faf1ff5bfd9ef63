"""Checks against a stack that is already up (`invmon stack up` with the same INVMON_* environment).

These tests never start or stop that stack: another process owns it. The one exception starts a Redis of
its own, on a free port in a temporary stack dir, to prove that up/down leave no process behind.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import pytest
from rich.console import Console

from contracts.topics import ALL_TOPICS
from infra.settings import Settings
from invmon.stack import kafka_admin
from invmon.stack.manager import status, up
from invmon.stack.paths import StackPaths
from invmon.stack.redis import RedisService
from invmon.stack.report import Reporter
from invmon.stack.state import StackState

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]


def _quiet() -> Console:
    return Console(file=io.StringIO())


def test_status_reports_every_service_running_and_ready(settings: Settings) -> None:
    rows = {row.name: row for row in status(settings)}

    assert set(rows) == {"kafka", "postgres", "redis"}
    assert rows["kafka"].port == settings.kafka_port
    assert rows["postgres"].port == settings.postgres_port
    assert rows["redis"].port == settings.redis_port
    for row in rows.values():
        assert row.running, row
        assert row.ready, row
        assert row.pid is not None
        assert psutil.pid_exists(row.pid)


def test_second_up_is_a_fast_no_op(settings: Settings) -> None:
    pids_before = {row.name: row.pid for row in status(settings)}
    output = io.StringIO()

    started = time.monotonic()
    did_something = up(settings, Console(file=output))
    elapsed = time.monotonic() - started

    assert did_something is False
    assert "nothing to do" in output.getvalue()
    assert elapsed < 5.0
    assert {row.name: row.pid for row in status(settings)} == pids_before


async def test_topics_exist_with_configured_partition_count(settings: Settings) -> None:
    names = [topic.name for topic in ALL_TOPICS]

    found = await kafka_admin.describe(f"127.0.0.1:{settings.kafka_port}", names)

    assert sorted(found) == sorted(names)
    for info in found.values():
        assert info.partitions == settings.kafka_partitions, info
        assert info.all_have_leaders, info


async def test_postgres_database_is_owned_by_the_app_role_and_has_btree_gist(settings: Settings) -> None:
    # asyncpg speaks plain postgresql:// URLs; the settings carry SQLAlchemy's driver suffix.
    parts = urlsplit(settings.database_url)
    dsn = urlunsplit(("postgresql", *parts[1:]))

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
        extension = await conn.fetchval("SELECT extname FROM pg_extension WHERE extname = 'btree_gist'")
    finally:
        await conn.close()

    assert owner == parts.username
    assert extension == "btree_gist"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisService]:
    own = Settings(
        stack_dir=tmp_path / "stack", redis_url=f"redis://127.0.0.1:{_free_port()}/0", stack_profile="test"
    )
    paths = StackPaths.from_settings(own)
    paths.ensure_base()
    service = RedisService(own, paths, StackState(paths.state_file))
    yield service
    # Whatever the test did, never leave its Redis running.
    if (pid := service.running_pid()) is not None:
        psutil.Process(pid).kill()


async def test_redis_up_then_down_leaves_no_process(own_redis: RedisService) -> None:
    reporter = Reporter(_quiet())

    await own_redis.up(reporter)
    pid = own_redis.running_pid()
    assert pid is not None
    assert await own_redis.ready()

    await own_redis.down(reporter)

    assert own_redis.running_pid() is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not await own_redis.ready()
