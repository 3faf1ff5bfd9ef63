"""One replicated stack per test session (`invmon stack up --cluster` in INVMON_CLUSTER_STACK_DIR on
INVMON_CLUSTER_BASE_PORT), stopped at the end. Only collected with --run-cluster (see tests/conftest.py)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from rich.console import Console

from infra.settings import Settings
from invmon.stack import manager
from invmon.stack.cluster import layout_of, member_settings


@pytest.fixture(scope="session")
def cluster(settings: Settings) -> Iterator[Settings]:
    """The settings of a process of the running cluster (its Kafka bootstrap, primary, Redis)."""
    manager.up(settings, Console(file=io.StringIO()), cluster=True)
    yield member_settings(settings, layout_of(settings))
    manager.down(settings, console=Console(file=io.StringIO()), cluster=True)
