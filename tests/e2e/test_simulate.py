"""`invmon simulate` against the real pipeline: its closing summary agrees with what the edge counted in
/metrics (invmon_edge_requests_total, request by request) and with what the workers wrote to PostgreSQL
(processed_commands for the accepted commands, dead_letters for the malformed records)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.settings import Settings
from tests.integration.helpers import wait_until
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]
NOT_OURS = ("/metrics", "/health/live", "/health/ready")


async def edge_requests(edge: httpx.AsyncClient) -> dict[tuple[str, int], float]:
    text = (await edge.get("/metrics")).text
    return {
        (sample.labels["route"], int(sample.labels["status"])): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "invmon_edge_requests"
        for sample in family.samples
        if sample.name == "invmon_edge_requests_total"
    }


async def run_simulate(*args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "invmon.cli", "simulate", *args, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    assert "simulate" in err.decode(), "the progress bar goes to stderr with --json"
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary


async def test_the_summary_agrees_with_the_edge_metrics_and_the_database(
    pipeline: dict[str, Process], stack: Settings, db: asyncpg.Connection
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.edge_port}", timeout=10) as edge:
        before = await edge_requests(edge)
        summary = await run_simulate(
            "--rate", "40", "--duration", "4", "--skus", "6", "--bad-per-mille", "80", "--seed", "18"
        )
        after = await edge_requests(edge)

    delta = {
        key: int(after[key] - before.get(key, 0))
        for key in after
        if key[0] not in NOT_OURS and after[key] != before.get(key, 0)
    }
    sent = {(route, status): n for route, status, n in summary["requests"]}
    assert delta == sent, "every request simulate made, and no other, is in the edge's counters"
    assert summary["accepted"] == sum(n for (route, status), n in delta.items() if status == 202)
    assert summary["accepted"] >= 100, summary
    assert summary["http_sent"] == sum(summary["statuses"].values()) + summary["transport_errors"]
    assert summary["sent"] == summary["http_sent"] + summary["bad_records"]
    assert summary["refused"] == {k: v for k, v in summary["statuses"].items() if 400 <= int(k) < 500}
    assert set(summary["by_kind"]) == {"reserve", "fulfil", "restock", "count", "price", "bad_record"}
    assert summary["p50_ms"] is not None
    assert summary["p50_ms"] <= summary["p99_ms"]
    assert summary["commands_per_s"] > 10

    # Every accepted command was finished by a worker (applied or rejected), every bad record dead-lettered.
    actor = summary["actor"]
    await wait_until(
        lambda: db.fetchval("SELECT count(*) FROM processed_commands WHERE actor = $1", actor),
        lambda n: n >= summary["accepted"],
        within=30,
        what="the workers to finish simulate's commands",
    )
    assert (
        await db.fetchval("SELECT count(*) FROM processed_commands WHERE actor = $1", actor)
        == (summary["accepted"])
    )
    assert summary["bad_records"] > 0
    assert summary["dead_lettered"] == summary["bad_records"]
    dead = await db.fetchval("SELECT count(*) FROM dead_letters WHERE actor = $1", actor)
    assert dead == summary["dead_lettered"]
