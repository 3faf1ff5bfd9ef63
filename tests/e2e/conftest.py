from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from infra.settings import Settings
from tests.e2e.support import user_token
from tests.processes import Process, running


@pytest.fixture(scope="package")
def pipeline(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Process]]:
    """Every Procfile process (edge, workers, outbox relay, WebSocket relay) as a real process."""
    log_dir: Path = tmp_path_factory.mktemp("pipeline-logs")
    ports = {
        "edge": stack.edge_port,
        "stock_worker": stack.stock_worker_port,
        "outbox_relay": stack.outbox_relay_port,
        "price_worker": stack.price_worker_port,
        "live_relay": stack.live_port,
    }
    with running(ports, log_dir, SHARED_CLIENT_LIMITS) as processes:
        yield processes


# Every test reaches the pipeline's edge from 127.0.0.1, many as the admin: with the default per-IP and
# per-principal limits the whole suite would share one quota a minute. The rate-limit tests start edges
# with limits of their own (test_edge_intake.py).
SHARED_CLIENT_LIMITS = {
    "INVMON_RATE_LIMIT_IP": "1000000/minute",
    "INVMON_RATE_LIMIT_PRINCIPAL": "1000000/minute",
    "INVMON_RATE_LIMIT_LOGIN_ACCOUNT": "1000000/minute",
}


ADMIN = "e2e-admin"
ADMIN_PASSWORD = "e2e-admin-password-0123"


@pytest.fixture(scope="package")
def admin_token(pipeline: dict[str, Process], stack: Settings) -> str:
    """An admin user made the way an operator would (`invmon user add`), logged in through the edge."""
    return user_token(stack.edge_port, ADMIN, "admin", ADMIN_PASSWORD)


@pytest.fixture
async def edge(admin_token: str, stack: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack.edge_port}",
        timeout=10.0,
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as client:
        yield client


@pytest.fixture
def live_url(pipeline: dict[str, Process], stack: Settings) -> str:
    """The WebSocket relay of the pipeline (send the token in the `connect` frame)."""
    return f"ws://127.0.0.1:{stack.live_port}/v1/live"
