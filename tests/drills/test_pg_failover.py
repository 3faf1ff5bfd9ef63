"""PostgreSQL primary failure (docs/deployment.md, "Runbook: the PostgreSQL primary fails"): with the
standby synchronous (`invmon stack up --cluster --synchronous-standby`), SIGKILL the primary and its
backends under load, promote the standby, point every process at it, and check that every command
acknowledged before (and after) the failure is there, once. Afterwards the database pair is rebuilt empty
(the old primary is never started again next to the promoted one: two primaries).

Also here: what synchronous replication costs (alternating short runs with it on and off)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from infra.settings import Settings
from invmon.stack.cluster_layout import ClusterLayout
from invmon.stack.pg_cluster import STANDBY_NAME
from tests.drills import cluster
from tests.drills.checks import assert_clean, at
from tests.drills.conftest import HIGH_LIMITS
from tests.drills.harness import ARTIFACTS, Drill, Target, run_drill
from tests.drills.tally import Outcome

pytestmark = [pytest.mark.drill, pytest.mark.cluster]


async def superuser(member: str, port: int) -> asyncpg.Connection:
    """The member's `postgres` superuser over its private socket (trust; root or postgres only)."""
    socket_dir = cluster.cluster_dir() / member / "run"
    return await asyncpg.connect(host=str(socket_dir), port=port, user="postgres", database="postgres")


async def synchronous_names(port: int) -> str:
    conn = await superuser("postgres-primary", port)
    try:
        return str(await conn.fetchval("SHOW synchronous_standby_names"))
    finally:
        await conn.close()


async def promote(port: int) -> None:
    """`pg_ctl promote` of the runbook, as SQL: the standby leaves recovery and takes writes."""
    conn = await superuser("postgres-standby", port)
    try:
        if not await conn.fetchval("SELECT pg_promote(wait => true, wait_seconds => 60)"):
            raise RuntimeError("pg_promote did not finish")
    finally:
        await conn.close()


async def test_promote_the_synchronous_standby_when_the_primary_dies(
    failover_pipeline: cluster.Pipeline, cluster_settings: Settings, drill_duration: float
) -> None:
    lay = failover_pipeline.lay
    assert await synchronous_names(lay.postgres_primary_port) == STANDBY_NAME
    standby_url = lay.database_url(lay.postgres_standby_port, cluster.password(cluster_settings))
    target = Target(http_port=lay.nginx_port, settings=cluster_settings)

    async def script(drill: Drill) -> None:
        started = asyncio.get_running_loop().time()
        await at(drill_duration, 0.3, started)
        pid = cluster.listening_pid(lay.postgres_primary_port)
        assert pid is not None
        drill.fault()
        cluster.sigkill(pid, with_children=True)  # the machine is gone: postmaster and backends
        began = time.monotonic()
        await promote(lay.postgres_standby_port)
        drill.notes["promote_s"] = round(time.monotonic() - began, 2)
        target.database_url = standby_url
        await asyncio.to_thread(failover_pipeline.repoint, INVMON_DATABASE_URL=standby_url)
        drill.notes["promote_and_repoint_s"] = round(time.monotonic() - began, 2)

    outcome = await run_drill("postgres_primary_failover", target, script, duration_s=drill_duration)
    assert_clean(outcome)


async def test_what_synchronous_replication_costs(
    cost_pipeline: cluster.Pipeline, cluster_settings: Settings, drill_duration: float
) -> None:
    """Indicative, on a shared box: the same no-fault load with the standby synchronous and not,
    alternating; the figures (202 p50/p99, apply rate) go to test-artifacts/drills/sync_cost.json."""
    lay = cost_pipeline.lay
    target = Target(http_port=lay.nginx_port, settings=cluster_settings)
    runs: dict[str, list[dict[str, float | None]]] = {"sync": [], "async": []}
    for _ in range(2):
        for mode in ("sync", "async"):
            await asyncio.to_thread(cluster.stack_up, ("--synchronous-standby",) if mode == "sync" else ())
            expected = STANDBY_NAME if mode == "sync" else ""
            assert await synchronous_names(lay.postgres_primary_port) == expected
            outcome = await run_drill(
                f"sync_cost_{mode}", target, _no_fault, rate=400, duration_s=drill_duration / 2
            )
            assert_clean(outcome)
            runs[mode].append(await _figures(outcome, cluster_settings.database_url))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "sync_cost.json").write_text(json.dumps(runs, indent=2))
    print(json.dumps(runs, indent=2))


async def _no_fault(drill: Drill) -> None:
    return None


async def _figures(outcome: Outcome, database_url: str) -> dict[str, float | None]:
    """The run's 202 p50/p99 and the stock worker's apply rate (commands/s between the first and the
    last applied_at of the run's commands)."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM max(applied_at) - min(applied_at)) AS span"
            " FROM processed_commands WHERE sku LIKE $1 AND command_type = 'receive_stock'",
            f"{outcome.notes['prefix']}-%",
        )
    finally:
        await conn.close()
    assert row is not None
    span = float(row["span"] or 0)
    return {
        "acknowledged": outcome.acknowledged,
        "http_202_p50_ms": outcome.http_p50_ms_steady,
        "http_202_p99_ms": outcome.http_p99_ms_steady,
        "applied_per_s": round(row["n"] / span, 1) if span else None,
    }


# ------------------------------------------------------------------------------------------ fixtures


def _rebuild_postgres(lay: ClusterLayout) -> None:
    """Stop whatever runs of the pair, drop both data dirs, and let `stack up --cluster` make a new primary
    (migrated) and a new standby of it: the drills need the layout's primary back on its port."""
    for port in (lay.postgres_primary_port, lay.postgres_standby_port):
        pid = cluster.listening_pid(port)
        if pid is not None:
            cluster.sigkill(pid, with_children=True)
    for member in ("postgres-primary", "postgres-standby"):
        shutil.rmtree(cluster.cluster_dir() / member, ignore_errors=True)
    cluster.stack_up()


@pytest.fixture
def failover_pipeline(
    cluster_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cluster.Pipeline]:
    """The drill processes with the standby made synchronous first; the database pair rebuilt after."""
    lay = cluster.layout()
    cluster.stack_up(("--synchronous-standby",))
    log_dir: Path = tmp_path_factory.mktemp("drill-failover-logs")
    try:
        with cluster.pipeline(cluster_settings, lay, log_dir, HIGH_LIMITS) as running:
            yield running
    finally:
        _rebuild_postgres(lay)


@pytest.fixture
def cost_pipeline(
    cluster_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cluster.Pipeline]:
    log_dir: Path = tmp_path_factory.mktemp("drill-sync-cost-logs")
    try:
        with cluster.pipeline(cluster_settings, cluster.layout(), log_dir, HIGH_LIMITS) as running:
            yield running
    finally:
        cluster.stack_up()  # back to asynchronous, the default
