"""The backup and restore drill (README, "Backup and restore"), on the real stack: commands through the edge,
`invmon db backup`, more commands, `invmon db restore` into a fresh database, then workers pointed at it
with new consumer groups replay the command topics from the beginning and reach the original's state.
Processed command ids make the replay idempotent: what the backup holds is skipped, the rest applied."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from infra.settings import Settings
from invmon.backup import BackupError, backup, restore
from invmon.cli import app
from invmon.stack.paths import StackPaths
from tests.e2e.support import new_sku, wait_for_status
from tests.integration.helpers import wait_until
from tests.processes import Process, start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    status = await wait_for_status(edge, response.json()["command_id"], within=30)
    assert status["status"] in ("applied", "rejected"), status


async def first_phase(edge: httpx.AsyncClient, sku: str) -> None:
    await applied(
        edge, await edge.post("/v1/items", json={"sku": sku, "name": "Drill", "min_stock_level": 2})
    )
    await applied(edge, await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 10}))
    await applied(
        edge, await edge.post(f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "10"})
    )
    await applied(
        edge, await edge.post(f"/v1/items/{sku}/reservations", json={"reservation_id": "r-1", "quantity": 3})
    )


async def second_phase(edge: httpx.AsyncClient, sku: str, rounds: int) -> None:
    for n in range(rounds):
        await applied(edge, await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 1 + n}))
        await applied(
            edge,
            await edge.post(
                f"/v1/items/{sku}/reservations", json={"reservation_id": f"r2-{n}", "quantity": 1}
            ),
        )
    await applied(edge, await edge.post(f"/v1/items/{sku}/reservations/r-1/fulfil"))
    await applied(
        edge, await edge.post(f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "10.5"})
    )
    await applied(edge, await edge.post(f"/v1/items/{sku}/counts", json={"counted_quantity": 40}))


async def state(conn: asyncpg.Connection, skus: list[str]) -> dict[str, Any]:
    """What the drill compares: items, reservations, prices and the audit trail's row counts per SKU."""
    queries = {
        "items": "SELECT sku, stock_quantity, reserved_quantity, alert_state, version, is_active FROM items",
        "reservations": "SELECT sku, reservation_id, quantity, status FROM reservations",
        "prices": "SELECT sku, currency, selling_price, effective_price, margin_state, version FROM prices",
        "ledger": "SELECT sku, count(*), sum(delta), sum(reserved_delta) FROM stock_ledger",
        "price_history": "SELECT sku, count(*) FROM price_history",
        "processed": "SELECT sku, count(*) FROM processed_commands",
    }
    found: dict[str, Any] = {}
    for name, query in queries.items():
        group = " GROUP BY sku" if "count(*)" in query else ""
        rows = await conn.fetch(f"{query} WHERE sku = ANY($1::text[]){group} ORDER BY 1, 2", skus)
        found[name] = [tuple(r) for r in rows]
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def fresh_database(stack: Settings) -> AsyncIterator[str]:
    """An empty database owned by the pipeline's role (made as an operator would: `createdb -O invmon`);
    its URL. Dropped afterwards."""
    name = f"invmon_drill_{uuid.uuid4().hex[:8]}"
    socket_dir = str(StackPaths.from_settings(stack).pg_socket_dir)
    admin = await asyncpg.connect(
        host=socket_dir, port=stack.postgres_port, user="postgres", database="postgres"
    )
    try:
        owner = stack.database_url.split("://", 1)[1].split(":", 1)[0]
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        # As the stack manager and compose's init provision a database: btree_gist made by the superuser
        # (so it is not the restoring role's to comment on).
        ext = await asyncpg.connect(host=socket_dir, port=stack.postgres_port, user="postgres", database=name)
        try:
            await ext.execute("CREATE EXTENSION btree_gist")
        finally:
            await ext.close()
        yield stack.database_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def cli(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


async def drill(
    edge: httpx.AsyncClient,
    stack: Settings,
    db: asyncpg.Connection,
    target_url: str,
    tmp_path: Path,
    skus: int,
    rounds: int,
) -> None:
    items = [new_sku() for _ in range(skus)]
    for sku in items:
        await first_phase(edge, sku)
    backup = tmp_path / "invmon.dump"
    await asyncio.to_thread(cli, "db", "backup", "--output", str(backup))
    for sku in items:
        await second_phase(edge, sku, rounds)
    original = await state(db, items)

    await asyncio.to_thread(cli, "db", "restore", str(backup), "--target-url", target_url)
    # A second restore onto what is now a full database is refused.
    refused = await asyncio.to_thread(
        CliRunner().invoke, app, ["db", "restore", str(backup), "--target-url", target_url]
    )
    assert refused.exit_code == 1
    assert "not empty" in refused.output

    restored = await asyncpg.connect(target_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        assert await state(restored, items) != original, "the backup already holds the second phase"
        run = uuid.uuid4().hex[:8]
        env = {
            "INVMON_DATABASE_URL": target_url,
            "INVMON_STOCK_CONSUMER_GROUP": f"drill-stock-{run}",
            "INVMON_PRICE_CONSUMER_GROUP": f"drill-price-{run}",
            "INVMON_STOCK_WORKER_PORT": str(free_port()),
            "INVMON_PRICE_WORKER_PORT": str(free_port()),
        }
        workers = [
            start(name, int(env[f"INVMON_{name.upper()}_PORT"]), tmp_path, env)
            for name in ("stock_worker", "price_worker")
        ]
        try:
            for worker in workers:
                await asyncio.to_thread(wait_ready, worker)
            replayed = await wait_until(
                lambda: state(restored, items), lambda s: s == original, within=180, what="replayed state"
            )
        finally:
            for worker in workers:
                worker.stop()
    finally:
        await restored.close()
    assert replayed == original
    # Nothing applied twice: one ledger row per applied stock movement, as in the original.
    assert replayed["ledger"] == original["ledger"]


async def test_backup_restore_and_replay_reach_the_same_state(
    edge: httpx.AsyncClient,
    pipeline: dict[str, Process],
    stack: Settings,
    db: asyncpg.Connection,
    fresh_database: str,
    tmp_path: Path,
) -> None:
    await drill(edge, stack, db, fresh_database, tmp_path, skus=2, rounds=2)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_backup_restore_drill_at_volume(
    edge: httpx.AsyncClient,
    pipeline: dict[str, Process],
    stack: Settings,
    db: asyncpg.Connection,
    fresh_database: str,
    tmp_path: Path,
) -> None:
    await drill(edge, stack, db, fresh_database, tmp_path, skus=20, rounds=15)


def test_a_failed_backup_leaves_no_file_and_shows_no_password(stack: Settings, tmp_path: Path) -> None:
    parts = urlsplit(stack.database_url)
    secret = "not-the-password-7f3a"
    wrong = parts._replace(netloc=f"{parts.username}:{secret}@{parts.hostname}:{parts.port}").geturl()
    output = tmp_path / "invmon.dump"
    with pytest.raises(BackupError, match="password authentication failed") as failed:
        backup(wrong, output)
    assert secret not in str(failed.value)
    assert list(tmp_path.iterdir()) == []


def test_restore_of_a_missing_file_is_refused(stack: Settings, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no backup file"):
        restore(tmp_path / "nothing.dump", stack.database_url)
