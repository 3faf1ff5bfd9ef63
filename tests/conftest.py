"""Shared fixtures. Tests marked `stack` need the real local stack that `./dev test` starts; they fail
(never skip) when it is not there. Tests marked `slow` run only with --run-slow; tests marked `cluster`
bring up the replicated stack (`invmon stack up --cluster`) and run only with --run-cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra.settings import Settings, get_settings
from invmon.stack.manager import status
from tests.integration.helpers import database


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run long fault and soak tests")
    parser.addoption(
        "--run-cluster",
        action="store_true",
        help="also run the tests that bring up the replicated stack (INVMON_CLUSTER_STACK_DIR)",
    )
    parser.addoption(
        "--drill",
        action="store_true",
        help="also run the fault drills (tests/drills), short load",
    )
    parser.addoption("--drill-full", action="store_true", help="run the fault drills with their full load")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cluster: brings up the replicated stack (3 Kafka nodes, PG primary + standby); --run-cluster",
    )
    config.addinivalue_line(
        "markers", "drill: a fault drill under load (tests/drills), run with --drill (short) or --drill-full"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A cluster takes ~1.2 GiB and half a minute to start: not part of a default (or --run-slow) run;
    # --run-cluster runs its tests, --drill / --drill-full the drills, slow as they all are.
    drills = bool(config.getoption("--drill") or config.getoption("--drill-full"))
    run_cluster = bool(config.getoption("--run-cluster"))
    run_slow = bool(config.getoption("--run-slow"))
    for item in items:
        # Markers, not keywords: a test's keywords also hold its folders' names (tests/cluster/...).
        if item.get_closest_marker("drill"):
            if not drills:
                item.add_marker(pytest.mark.skip(reason="fault drill: run with --drill or --drill-full"))
        elif item.get_closest_marker("cluster"):
            if not run_cluster:
                item.add_marker(pytest.mark.skip(reason="cluster: run with --run-cluster"))
        elif item.get_closest_marker("slow") and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow"))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The running local stack; fails loudly when it is not up."""
    down = [s.name for s in status(settings) if not (s.running and s.ready)]
    if down:
        pytest.fail(f"stack services not running in {settings.stack_dir}: {down}; run ./dev test")
    return settings


@pytest.fixture
async def db(stack: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the stack's database, for checks behind the processes' backs."""
    async with database(stack) as conn:
        yield conn
