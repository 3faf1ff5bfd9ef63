"""The fault drills of issue 16 against `invmon stack up --cluster`: a steady load (200 commands/s, half
through nginx, half straight to Kafka) while one member is killed and brought back. Each drill must end
with 0 commands lost and 0 applied twice; its figures go to test-artifacts/drills/<drill>.json and the
table in docs/deployment.md.

    ./dev test tests/drills --drill          # 20 s of load per drill
    ./dev test tests/drills --drill-full     # 120 s

The PostgreSQL promotion drill is in test_pg_failover.py (it rebuilds the database pair afterwards)."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import pytest

from contracts.topics import EVENTS, STOCK_COMMANDS
from invmon.stack.cluster_layout import ClusterLayout
from tests.drills import cluster
from tests.drills.checks import assert_clean, assert_live_recovered, at
from tests.drills.harness import Drill, Target, run_drill

pytestmark = [pytest.mark.drill, pytest.mark.cluster]


def metric_total(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_sigkill_the_broker_leading_most_partitions(
    drill_target: Target, drill_pipeline: cluster.Pipeline, drill_duration: float
) -> None:
    lay = drill_pipeline.lay
    topics = [STOCK_COMMANDS.name, EVENTS.name]

    async def script(drill: Drill) -> None:
        started = asyncio.get_running_loop().time()
        await at(drill_duration, 0.3, started)
        node = await cluster.busiest_broker(lay)
        pid = cluster.listening_pid(lay.kafka_port(node))
        assert pid is not None
        drill.notes["killed"] = f"kafka-{node + 1} (pid {pid}, leading {await _led(lay, node)} partitions)"
        drill.fault()
        cluster.sigkill(pid)
        drill.notes["leaders_moved_s"] = await cluster.wait_for(
            lambda: cluster.all_partitions_led(lay, topics), "new partition leaders", 60
        )
        await at(drill_duration, 0.6, started)
        await asyncio.to_thread(cluster.stack_up)
        drill.notes["restarted"] = f"kafka-{node + 1}"

    outcome = await run_drill("kafka_leader_sigkill", drill_target, script, duration_s=drill_duration)
    assert_clean(outcome)


async def _led(lay: ClusterLayout, node: int) -> int:
    counts = await cluster.partition_leaders(lay.kafka_bootstrap, None)
    return counts.get(node + 1, 0)


async def test_stop_the_postgres_standby_then_restart_it(
    drill_target: Target, drill_pipeline: cluster.Pipeline, drill_duration: float
) -> None:
    lay = drill_pipeline.lay
    front = f"http://127.0.0.1:{drill_target.http_port}"
    reads: dict[str, int] = {}

    async def read_while_down(drill: Drill, stop: asyncio.Event) -> None:
        """The lag-tolerant reads (list, ledger) the standby serves must fall back to the primary."""
        sku = f"{drill.prefix}-0000"
        headers = {"Authorization": f"Bearer {drill.token}"}
        async with httpx.AsyncClient(base_url=front, headers=headers, timeout=10.0) as client:
            while not stop.is_set():
                for path in ("/v1/items?limit=5", f"/v1/items/{sku}/ledger"):
                    try:
                        status = str((await client.get(path)).status_code)
                    except httpx.HTTPError as error:
                        status = type(error).__name__
                    reads[status] = reads.get(status, 0) + 1
                await asyncio.sleep(0.25)  # a dashboard's polling pace

    async def script(drill: Drill) -> None:
        started = asyncio.get_running_loop().time()
        await at(drill_duration, 0.3, started)
        pid = cluster.listening_pid(lay.postgres_standby_port)
        assert pid is not None
        drill.fault()
        os.kill(pid, signal.SIGINT)  # what `pg_ctl stop -m fast` sends
        psutil.wait_procs([psutil.Process(pid)], timeout=30)
        stop = asyncio.Event()
        reading = asyncio.create_task(read_while_down(drill, stop))
        await at(drill_duration, 0.6, started)
        stop.set()
        await reading
        await asyncio.to_thread(cluster.stack_up)
        drill.notes["reads_while_standby_down"] = dict(reads)

    outcome = await run_drill("postgres_standby_stop", drill_target, script, duration_s=drill_duration)
    assert_clean(outcome)
    assert set(reads) == {"200"}, reads


async def test_sigkill_the_redis_primary(
    drill_target: Target, drill_pipeline: cluster.Pipeline, drill_duration: float, live_url: str
) -> None:
    lay = drill_pipeline.lay

    async def script(drill: Drill) -> None:
        started = asyncio.get_running_loop().time()
        await at(drill_duration, 0.3, started)
        master = await cluster.redis_master_port(lay)
        pid = cluster.listening_pid(master)
        assert pid is not None
        drill.notes["killed"] = f"redis master :{master} (pid {pid})"
        drill.fault()
        cluster.sigkill(pid)

        async def promoted() -> bool:
            return await cluster.redis_master_port(lay) != master

        drill.notes["sentinel_failover_s"] = await cluster.wait_for(promoted, "Sentinel failover", 90)
        await at(drill_duration, 0.6, started)
        await asyncio.to_thread(cluster.stack_up)  # the old master comes back as a replica
        async with httpx.AsyncClient(timeout=5.0) as client:
            errors = 0.0
            for copy in range(cluster.COPIES):
                text = (await client.get(f"http://127.0.0.1:{lay.process_port('edge', copy)}/metrics")).text
                errors += metric_total(text, "invmon_edge_ratelimit_errors_total")
        # Documented mode: a rate-limit check that cannot reach Redis lets the request through.
        drill.notes["ratelimit_errors_let_through"] = errors

    outcome = await run_drill(
        "redis_primary_sigkill", drill_target, script, duration_s=drill_duration, live_url=live_url
    )
    assert_clean(outcome)
    assert_live_recovered(outcome)


async def test_sigkill_one_edge_and_one_relay(
    drill_target: Target, drill_pipeline: cluster.Pipeline, drill_duration: float, live_url: str
) -> None:
    lay = drill_pipeline.lay
    assert cluster.listening_pid(lay.nginx_port) is not None, "this drill needs nginx in front"

    async def script(drill: Drill) -> None:
        started = asyncio.get_running_loop().time()
        await at(drill_duration, 0.3, started)
        drill.fault()
        drill_pipeline.kill("edge", 0)
        drill_pipeline.kill("live_relay", 0)
        await at(drill_duration, 0.6, started)
        await asyncio.to_thread(drill_pipeline.restart, "edge", 0)
        await asyncio.to_thread(drill_pipeline.restart, "live_relay", 0)

    outcome = await run_drill(
        "edge_and_relay_sigkill",
        drill_target,
        script,
        duration_s=drill_duration,
        live_url=live_url,
        live_clients=2,  # nginx (least_conn) gives each relay one: one of them loses its relay
    )
    assert_clean(outcome)
    assert_live_recovered(outcome)
    assert outcome.notes["live_connections"] > outcome.notes["live_clients"], "no client reconnected"


async def test_sigkill_a_stock_worker(
    drill_target: Target, drill_pipeline: cluster.Pipeline, drill_duration: float
) -> None:
    async def script(drill: Drill) -> None:
        started = asyncio.get_running_loop().time()
        await at(drill_duration, 0.3, started)
        drill.fault()
        drill_pipeline.kill("stock_worker", 0)  # its partitions move to copy 1 at the group's rebalance
        await at(drill_duration, 0.6, started)
        await asyncio.to_thread(drill_pipeline.restart, "stock_worker", 0)

    outcome = await run_drill("stock_worker_sigkill", drill_target, script, duration_s=drill_duration)
    assert_clean(outcome)
