"""Run one fault drill: register the drill's SKUs, send the steady load (tests/drills/load.py) while the
drill's script injects its fault and heals it, wait for the pipeline to settle, count every command id
(tests/drills/tally.py), print the table row and write test-artifacts/drills/<drill>.json."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from contracts.stock_commands import RegisterItem
from db import auth_repo
from db.engine import make_engine
from db.outbox_repo import asyncpg_dsn
from infra.credentials import hash_password
from infra.settings import Settings
from tests.drills import load
from tests.drills.tally import Outcome, table, tally
from tests.live_client import LiveClient
from tests.processes import ROOT
from workers.pipeline.batch import apply_batch
from workers.rules.alerts import AlertPolicy
from workers.stock_worker.apply import StockSession

USER = "drill-operator"
PASSWORD = "drill-operator-password-0123"
INITIAL_ON_HAND = 100
ARTIFACTS = ROOT / "test-artifacts" / "drills"
SETTLE_LIMIT_S = 120.0  # after the load: every acknowledged command applied, or the drill fails as lost
QUIET_S = 3.0  # ... and no new command applied for this long


@dataclass(slots=True)
class Target:
    """Where the load goes and where its effect is counted. `database_url` may change during a drill (the
    PostgreSQL promotion repoints it)."""

    http_port: int  # nginx in the cluster, the edge on a single node
    settings: Settings  # kafka_bootstrap for the direct half; the primary's database_url
    database_url: str = ""

    def __post_init__(self) -> None:
        self.database_url = self.database_url or self.settings.database_url


@dataclass(slots=True)
class Drill:
    """Handed to a drill's script: `fault()` marks the moment the fault is injected."""

    name: str
    target: Target
    token: str  # the load's operator, also good for a WebSocket client
    prefix: str  # of the drill's SKUs: `<prefix>-0000` ...
    fault_ns: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def fault(self) -> None:
        self.fault_ns = time.time_ns()


async def register(database_url: str, prefix: str, skus: int) -> list[str]:
    """The drill's SKUs, registered through the worker's own apply path; returns their command ids."""
    now = datetime.now(UTC)
    commands = [
        RegisterItem(
            command_id=uuid.uuid4(),
            sku=load.sku_of(prefix, i, skus),
            issued_at=now,
            actor="drill",
            source="drill",
            name=f"Drill item {i}",
            category="drill",
            initial_quantity=INITIAL_ON_HAND,
            cost_price=Decimal("1.00"),
        )
        for i in range(skus)
    ]
    engine = make_engine(database_url, pool_size=1)
    try:
        report = await apply_batch(engine, StockSession(AlertPolicy(10)), commands, now)
        if len(report.applied) != skus:
            raise RuntimeError(f"drill registration: {len(report.applied)} of {skus} applied")
        async with engine.begin() as conn:
            await auth_repo.upsert_user(conn, USER, hash_password(PASSWORD), ["operator"])
    finally:
        await engine.dispose()
    return [str(c.command_id) for c in commands]


async def login(port: int) -> str:
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.post(
            f"http://127.0.0.1:{port}/v1/auth/token", data={"username": USER, "password": PASSWORD}
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


async def _counts(
    database_url: str, skus: list[str], registrations: set[str]
) -> tuple[set[str], dict[str, int], int]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        applied = await conn.fetch(
            "SELECT command_id::text AS id FROM processed_commands"
            " WHERE sku = ANY($1::text[]) AND status = 'applied' AND command_type = 'receive_stock'",
            skus,
        )
        rows = await conn.fetch(
            "SELECT command_id::text AS id, count(*) AS n FROM stock_ledger"
            " WHERE sku = ANY($1::text[]) GROUP BY command_id",
            skus,
        )
        on_hand = await conn.fetchval(
            "SELECT coalesce(sum(stock_quantity), 0) FROM items WHERE sku = ANY($1::text[])", skus
        )
    finally:
        await conn.close()
    ledger = {r["id"]: int(r["n"]) for r in rows if r["id"] not in registrations}
    return {r["id"] for r in applied}, ledger, int(on_hand) - INITIAL_ON_HAND * len(skus)


async def settle(
    target: Target, skus: list[str], registrations: set[str], acked: set[str]
) -> tuple[set[str], dict[str, int], int]:
    """Wait until every acknowledged command is applied and nothing more arrives (bounded)."""
    deadline = time.monotonic() + SETTLE_LIMIT_S
    last: tuple[set[str], dict[str, int], int] | None = None
    quiet_since = time.monotonic()
    while True:
        try:
            now = await _counts(target.database_url, skus, registrations)
        except (OSError, asyncpg.PostgresError):
            now = last or (set(), {}, 0)  # the database may be the member being failed over
        if last is None or len(now[0]) != len(last[0]):
            quiet_since = time.monotonic()
        last = now
        if acked <= now[0] and time.monotonic() - quiet_since >= QUIET_S:
            return now
        if time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.5)  # poll interval while the pipeline drains


async def run_drill(
    name: str,
    target: Target,
    script: Callable[[Drill], Awaitable[None]],
    *,
    rate: float = 200.0,
    duration_s: float = 20.0,
    skus: int = 50,
    http_connections: int = 8,
    live_url: str | None = None,
    live_clients: int = 1,
) -> Outcome:
    """`rate` commands/s for `duration_s`, half over HTTP to target.http_port and half to Kafka, while
    `script(drill)` runs (it waits, calls drill.fault(), breaks something, heals it). With `live_url`, a
    WebSocket client follows `inventory` throughout and must end with the database's stock (notes
    `live_*`). Returns the figures, printed as a table row, written to test-artifacts/drills/<name>.json."""
    prefix = f"DRILL-{uuid.uuid4().hex[:6].upper()}"
    registrations = set(await register(target.database_url, prefix, skus))
    token = await login(target.http_port)
    drill = Drill(name, target, token, prefix)
    recorder = load.Recorder()
    start_ns = time.time_ns()
    deadline = time.monotonic() + duration_s
    senders = asyncio.gather(
        load.send_http(
            target.http_port,
            token,
            prefix=prefix,
            skus=skus,
            rate=rate / 2,
            deadline=deadline,
            connections=http_connections,
            recorder=recorder,
        ),
        load.send_kafka(
            target.settings, prefix=prefix, skus=skus, rate=rate / 2, deadline=deadline, recorder=recorder
        ),
    )
    stop_live = asyncio.Event()
    clients = [LiveClient(live_url, token) for _ in range(live_clients)] if live_url else []
    following = [asyncio.create_task(c.run(stop_live)) for c in clients]
    try:
        for client in clients:
            await asyncio.wait_for(client.subscribed.wait(), 30)
        await asyncio.gather(senders, script(drill))
        sku_names = sorted({load.sku_of(prefix, i, skus) for i in range(skus)})
        acked = {s.command_id for s in recorder.samples if s.acked and s.command_id}
        applied, ledger, delta = await settle(target, sku_names, registrations, acked)
        if clients:
            drill.notes.update(await converged(clients, target.database_url, sku_names))
    finally:
        stop_live.set()
        if following:
            await asyncio.wait_for(asyncio.gather(*following), 30)
    outcome = tally(
        name,
        recorder.samples,
        rate=rate,
        duration_s=duration_s,
        applied_ids=applied,
        ledger_rows=ledger,
        stock_delta=delta,
        start_ns=start_ns,
        fault_ns=drill.fault_ns,
        notes={"prefix": prefix, "skus": skus, **drill.notes},
    )
    write(outcome)
    print("\n" + table([outcome]))
    return outcome


async def converged(
    clients: list[LiveClient], database_url: str, skus: list[str], limit_s: float = 30.0
) -> dict[str, Any]:
    """Wait until every live client's view of the drill's SKUs equals the database's; what they went
    through (summed over the clients)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        rows = await conn.fetch("SELECT sku, stock_quantity FROM items WHERE sku = ANY($1::text[])", skus)
    finally:
        await conn.close()
    truth = {r["sku"]: int(r["stock_quantity"]) for r in rows}
    deadline = time.monotonic() + limit_s
    differ = list(truth)
    while time.monotonic() < deadline:
        differ = [s for c in clients for s, n in truth.items() if s not in c.items or c.items[s].on_hand != n]
        if not differ:
            break
        await asyncio.sleep(0.2)  # poll interval while the last frames arrive
    return {
        "live_converged": not differ,
        "live_differ": differ[:5],
        "live_clients": len(clients),
        "live_gaps": [gap for c in clients for gap in c.gaps],
        "live_foreign_epochs": sum(c.foreign_epochs for c in clients),
        "live_connections": sum(c.connections for c in clients),
        "live_recovered": sum(c.recovered for c in clients),
        "live_snapshots": sum(c.snapshots for c in clients),
        "live_resets": sum(c.resets for c in clients),
    }


def write(outcome: Outcome, directory: Path = ARTIFACTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{outcome.drill}.json"
    path.write_text(json.dumps(outcome.as_json(), indent=2, default=str))
    return path
