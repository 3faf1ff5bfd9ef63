"""With Kafka stopped, the edge refuses commands with 503 (never 202); once `invmon stack up` has restarted
Kafka, the same edge process accepts them again and the stock worker applies them.

One outage serves every test here: the module fixture stops the stack's Kafka (SIGTERM, the way
`invmon stack down` does), records what the edge answers, restarts Kafka with the stack manager (always,
in a finally block) and records the recovery. The tests then judge the observations.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import pytest

from infra.settings import Settings
from invmon.stack import manager
from invmon.stack.procs import terminate
from tests.e2e.support import new_sku, wait_for_status
from tests.processes import Process, start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]

PROBLEM_JSON = "application/problem+json"
PUBLISH_TIMEOUT_S = 2
KAFKA_STOP_TIMEOUT_S = 90.0
RECOVERY_TIMEOUT_S = 90.0


@dataclass
class Outage:
    edge: Process
    pids: list[int] = field(default_factory=list)  # the edge's pid at each step, and whether it lived
    alive: list[bool] = field(default_factory=list)
    kafka_pid: int = 0
    sku: str = ""
    batch_sku: str = ""
    refused: dict[str, httpx.Response] = field(default_factory=dict)  # commands sent while Kafka was down
    refused_id: str = ""  # the command id a refused command carried in its body
    ready_down: httpx.Response | None = None
    read_down: httpx.Response | None = None
    kafka_pid_after: int | None = None
    ready_up: httpx.Response | None = None
    recovered: httpx.Response | None = None  # the first 202 after the restart
    attempts: int = 0
    recovered_status: dict[str, Any] = field(default_factory=dict)
    shared_edge_recovered: httpx.Response | None = None
    after: dict[str, Any] = field(
        default_factory=dict
    )  # the ledger of `sku` once everything before a marker ran


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def note_pid(outage: Outage) -> None:
    outage.pids.append(outage.edge.popen.pid)
    outage.alive.append(outage.edge.popen.poll() is None)


async def kafka_pid(settings: Settings) -> int | None:
    rows = {row.name: row for row in await manager.status_async(settings)}
    return rows["kafka"].pid


async def until_accepted(send: Any, within: float) -> tuple[httpx.Response, int]:
    """Send until the edge answers 202; every other answer must be a 503 (the broker still unavailable)."""
    deadline = time.monotonic() + within
    attempts = 0
    while True:
        attempts += 1
        response: httpx.Response = await send()
        if response.status_code == 202:
            return response, attempts
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, f"no 202 within {within}s: {response.text}"
        await asyncio.sleep(0.2)  # poll interval while waiting for a condition


@pytest.fixture(scope="module")
async def outage(
    pipeline: dict[str, Process],
    admin_token: str,
    stack: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Outage]:
    port = free_port()
    log_dir: Path = tmp_path_factory.mktemp("outage-edge")
    env = {"INVMON_EDGE_PORT": str(port), "INVMON_EDGE_PUBLISH_TIMEOUT_S": str(PUBLISH_TIMEOUT_S)}
    process = start("edge", port, log_dir, env=env)
    headers = {"Authorization": f"Bearer {admin_token}"}
    seen = Outage(edge=process)
    try:
        await asyncio.to_thread(wait_ready, process)
        note_pid(seen)
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30.0) as edge,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{stack.edge_port}", headers=headers, timeout=30.0
            ) as shared,
        ):
            await run_outage(seen, edge, shared, stack)
            yield seen
    finally:
        try:
            await asyncio.to_thread(manager.up, stack)  # a no-op when Kafka is already back
        finally:
            process.stop()


async def run_outage(
    seen: Outage, edge: httpx.AsyncClient, shared: httpx.AsyncClient, stack: Settings
) -> None:
    seen.sku, seen.batch_sku = new_sku(), new_sku()
    for sku in (seen.sku, seen.batch_sku):
        registered = await edge.post("/v1/items", json={"sku": sku, "name": "Outage"})
        assert registered.status_code == 202, registered.text
        assert (await wait_for_status(edge, registered.json()["command_id"]))["status"] == "applied"

    pid = await kafka_pid(stack)
    assert pid is not None, "the stack's Kafka is not running"
    seen.kafka_pid = pid
    try:
        assert await terminate(psutil.Process(pid), KAFKA_STOP_TIMEOUT_S), "Kafka needed a SIGKILL"
        assert await kafka_pid(stack) is None
        note_pid(seen)

        sku = seen.sku
        seen.refused_id = str(uuid.uuid4())
        seen.refused["own command id"] = await edge.post(
            f"/v1/items/{sku}/receipts", json={"quantity": 1, "command_id": seen.refused_id}
        )
        seen.refused["edge's command id"] = await edge.post(
            f"/v1/items/{sku}/receipts", json={"quantity": 10}
        )
        seen.refused["idempotency key"] = await edge.post(
            f"/v1/items/{sku}/receipts", json={"quantity": 100}, headers={"Idempotency-Key": f"outage-{sku}"}
        )
        seen.refused["wait"] = await edge.post(
            f"/v1/items/{sku}/adjustments", params={"wait": 5}, json={"delta": 1000, "reason_code": "found"}
        )
        seen.refused["batch"] = await edge.post(
            "/v1/commands/stock:batch",
            json=[
                {
                    "type": "receive_stock",
                    "sku": seen.batch_sku,
                    "quantity": 1,
                    "command_id": str(uuid.uuid4()),
                }
            ],
        )
        seen.ready_down = await edge.get("/health/ready")
        seen.read_down = await edge.get(f"/v1/items/{sku}")
        note_pid(seen)
    finally:
        await asyncio.to_thread(manager.up, stack)
    seen.kafka_pid_after = await kafka_pid(stack)

    # The client retries the request it was refused, with the same Idempotency-Key, until it is accepted.
    seen.recovered, seen.attempts = await until_accepted(
        lambda: edge.post(
            f"/v1/items/{seen.sku}/receipts",
            json={"quantity": 100},
            headers={"Idempotency-Key": f"outage-{seen.sku}"},
        ),
        RECOVERY_TIMEOUT_S,
    )
    seen.recovered_status = await wait_for_status(edge, seen.recovered.json()["command_id"], within=60.0)
    seen.ready_up = await edge.get("/health/ready")
    note_pid(seen)

    # The package's own edge recovers too, so the tests after this module find a working pipeline.
    seen.shared_edge_recovered, _ = await until_accepted(
        lambda: shared.post(f"/v1/items/{seen.batch_sku}/counts", json={"counted_quantity": 0}),
        RECOVERY_TIMEOUT_S,
    )
    # A marker on the same SKU (same partition) runs only after everything published before it.
    marker = await edge.post(f"/v1/items/{seen.sku}/counts", json={"counted_quantity": 7, "note": "marker"})
    assert marker.status_code == 202, marker.text
    assert (await wait_for_status(edge, marker.json()["command_id"], within=60.0))["status"] == "applied"
    seen.after = (await edge.get(f"/v1/items/{seen.sku}/ledger", params={"limit": 1000})).json()
    note_pid(seen)


async def test_commands_get_503_not_202_while_kafka_is_down(outage: Outage) -> None:
    assert outage.refused, "no command was sent during the outage"
    for what, response in outage.refused.items():
        assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
        assert response.headers["content-type"] == PROBLEM_JSON, what
        assert int(response.headers["retry-after"]) >= 1, what
        problem = response.json()
        assert (problem["status"], problem["type"]) == (503, "/problems/broker-unavailable"), problem
        assert "Traceback" not in response.text, what


async def test_readiness_names_kafka_while_it_is_down(outage: Outage) -> None:
    assert outage.ready_down is not None
    assert outage.ready_down.status_code == 503, outage.ready_down.text
    checks = outage.ready_down.json()["checks"]
    assert checks["kafka"] != "ok", checks
    assert (checks["postgres"], checks["redis"]) == ("ok", "ok"), checks
    # Reads come from PostgreSQL and keep working.
    assert outage.read_down is not None
    assert outage.read_down.status_code == 200, outage.read_down.text


async def test_the_same_edge_accepts_again_after_kafka_restarts(outage: Outage) -> None:
    assert outage.kafka_pid_after is not None, "Kafka is not running after `invmon stack up`"
    assert outage.kafka_pid_after != outage.kafka_pid, "Kafka was not restarted"
    assert outage.recovered is not None
    assert outage.recovered.status_code == 202
    assert outage.recovered_status["status"] == "applied", outage.recovered_status
    assert outage.ready_up is not None
    assert outage.ready_up.status_code == 200, outage.ready_up.text
    assert outage.shared_edge_recovered is not None
    assert outage.shared_edge_recovered.status_code == 202
    # One edge process throughout: same pid, never exited.
    assert len(set(outage.pids)) == 1, outage.pids
    assert all(outage.alive), outage.alive
    assert len(outage.pids) == 5  # ready, Kafka gone, after the refusals, recovered, at the end


async def test_a_retried_idempotent_request_is_applied_once(outage: Outage) -> None:
    entries = outage.after["entries"]
    receipts = [e for e in entries if e["reason"] == "receive_stock" and e["delta"] == 100]
    assert (
        [e["command_id"] for e in receipts] == [outage.recovered.json()["command_id"]]
        if outage.recovered
        else []
    )


async def test_an_unconfirmed_command_names_its_id_and_is_applied_at_most_once(outage: Outage) -> None:
    """A 503 means "not confirmed": the record may already sit in the producer's queue and reach Kafka when
    it returns. The answer therefore carries the command id, and the id is never applied twice."""
    singles = {w: r for w, r in outage.refused.items() if "batch" not in w}
    assert singles
    for what, response in singles.items():
        problem = response.json()
        assert problem["status_url"] == f"/v1/commands/{problem['command_id']}", what
    ids = [e["command_id"] for e in outage.after["entries"]]
    assert len(ids) == len(set(ids)), "a command id was applied twice"
    # The client's own id is published as the id derived from it and the caller, which the 503 names.
    own = outage.refused["own command id"].json()["command_id"]
    assert own != outage.refused_id
    assert ids.count(own) <= 1
