"""INVMON_DATABASE_READ_URL: lag-tolerant reads go to the replica, read-your-writes stay on the primary, and
a replica that is down costs nothing but a fallback to the primary.

The "replica" here is a second database on the stack's server, migrated to head, holding rows the primary
does not: whichever database answered is then plain from the response. A real streaming standby is in
test_read_standby.py (slow)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from db import migrate
from infra.settings import Settings
from invmon.stack.paths import StackPaths
from invmon.stack.postgres import SUPERUSER
from tests.e2e.live_support import connected, free_port, metric, relay_process, subscribe, token, url_of
from tests.e2e.support import new_sku
from tests.processes import Process, running

REPLICA_ONLY_SKU = f"REPLICA-{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture(scope="module")
def replica_url(stack: Settings) -> Iterator[str]:
    """A second database at head with one item the primary never had."""
    name = f"replica_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(stack.database_url)
    url = urlunsplit(parts._replace(path=f"/{name}"))

    async def superuser() -> asyncpg.Connection:
        return await asyncpg.connect(
            host=str(StackPaths.from_settings(stack).pg_socket_dir),
            port=parts.port,
            user=SUPERUSER,
            database="postgres",
        )

    async def create() -> None:
        admin = await superuser()
        try:
            await admin.execute(f"CREATE DATABASE {name} OWNER {parts.username}")
        finally:
            await admin.close()
        await asyncio.to_thread(migrate.upgrade, url, "head")
        replica = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            await replica.execute(
                "INSERT INTO items (sku, name, stock_quantity) VALUES ($1, 'Only on the replica', 7)",
                REPLICA_ONLY_SKU,
            )
        finally:
            await replica.close()

    async def drop() -> None:
        admin = await superuser()
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()

    asyncio.run(create())
    try:
        yield url
    finally:
        asyncio.run(drop())


@contextmanager
def _edge(log_dir: Path, read_url: str) -> Iterator[Process]:
    port = free_port()
    env = {"INVMON_EDGE_PORT": str(port), "INVMON_DATABASE_READ_URL": read_url}
    with running({"edge": port}, log_dir, env) as processes:
        yield processes["edge"]


@pytest.fixture(scope="module")
def routed_edge(
    pipeline: object, replica_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    with _edge(tmp_path_factory.mktemp("routed-edge"), replica_url) as process:
        yield process


@pytest.fixture(scope="module")
def stopped_replica_url(stack: Settings) -> str:
    """Where a stopped standby would listen: nothing answers on the port."""
    return urlunsplit(urlsplit(stack.database_url)._replace(netloc=f"invmon:invmon@127.0.0.1:{free_port()}"))


@pytest.fixture(scope="module")
def fallback_edge(
    pipeline: object, stopped_replica_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    with _edge(tmp_path_factory.mktemp("fallback-edge"), stopped_replica_url) as process:
        yield process


@pytest.fixture
async def routed(routed_edge: Process, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{routed_edge.port}",
        timeout=20.0,
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as client:
        yield client


async def test_lag_tolerant_reads_come_from_the_replica(routed: httpx.AsyncClient) -> None:
    item = await routed.get(f"/v1/items/{REPLICA_ONLY_SKU}")
    assert item.status_code == 200, item.text
    assert item.json()["on_hand"] == 7
    listed = await routed.get("/v1/items", params={"q": REPLICA_ONLY_SKU})
    assert [i["sku"] for i in listed.json()["items"]] == [REPLICA_ONLY_SKU]
    exported = await routed.get("/v1/exports/ledger", params={"sku": REPLICA_ONLY_SKU, "format": "csv"})
    assert exported.status_code == 200, exported.text
    overview = await routed.get("/v1/overview")
    assert overview.status_code == 200, overview.text


async def test_wait_and_command_status_read_the_primary(
    routed: httpx.AsyncClient, edge: httpx.AsyncClient
) -> None:
    sku = new_sku()
    answer = await routed.post("/v1/items", params={"wait": 15}, json={"sku": sku, "name": "On the primary"})
    # 200 only if the outcome was read where the worker wrote it: the replica database never gets it.
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "applied"
    status = await routed.get(f"/v1/commands/{answer.json()['command_id']}")
    assert status.json()["status"] == "applied"
    # The item itself is a lag-tolerant read: this replica never sees it, the primary's edge does.
    assert (await routed.get(f"/v1/items/{sku}")).status_code == 404
    assert (await edge.get(f"/v1/items/{sku}")).status_code == 200


async def test_a_stopped_replica_falls_back_to_the_primary(
    fallback_edge: Process, admin_token: str, edge: httpx.AsyncClient
) -> None:
    sku = new_sku()
    registered = await edge.post("/v1/items", params={"wait": 15}, json={"sku": sku, "name": "Fallback"})
    assert registered.status_code == 200, registered.text
    before = await metric(fallback_edge, "invmon_read_fallbacks_total")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{fallback_edge.port}",
        timeout=20.0,
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as client:
        assert (await client.get(f"/v1/items/{sku}")).status_code == 200
        assert (await client.get(f"/v1/items/{sku}/ledger")).status_code == 200
        ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["postgres_read"] != "ok"
    assert ready.json()["checks"]["postgres"] == "ok"
    assert await metric(fallback_edge, "invmon_read_fallbacks_total") >= before + 2


async def test_relay_snapshots_come_from_the_replica(
    pipeline: object, replica_url: str, stack: Settings, tmp_path: Path
) -> None:
    with relay_process(tmp_path, INVMON_DATABASE_READ_URL=replica_url) as relay:
        async with connected(url_of(relay), token(stack)) as ws:
            reply = await subscribe(ws, "inventory", filter={"skus": [REPLICA_ONLY_SKU]})
    assert [row["sku"] for row in reply["snapshot"]] == [REPLICA_ONLY_SKU]


async def test_relay_snapshots_fall_back_when_the_replica_is_stopped(
    pipeline: object, stopped_replica_url: str, edge: httpx.AsyncClient, stack: Settings, tmp_path: Path
) -> None:
    sku = new_sku()
    registered = await edge.post("/v1/items", params={"wait": 15}, json={"sku": sku, "name": "Fallback"})
    assert registered.status_code == 200, registered.text
    with relay_process(tmp_path, INVMON_DATABASE_READ_URL=stopped_replica_url) as relay:
        async with connected(url_of(relay), token(stack)) as ws:
            reply = await subscribe(ws, "inventory", filter={"skus": [sku]})
        async with httpx.AsyncClient(timeout=10) as client:
            ready = await client.get(f"http://127.0.0.1:{relay.port}/health/ready")
    assert [row["sku"] for row in reply["snapshot"]] == [sku]
    assert ready.json()["status"] == "degraded"
