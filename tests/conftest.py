"""Shared fixtures. Tests marked `stack` need the real local stack that `./dev test` starts; they fail
(never skip) when it is not there. Tests marked `slow` run only with --run-slow."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra.settings import Settings, get_settings
from invmon.stack.manager import status
from tests.integration.helpers import database


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run long fault and soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
