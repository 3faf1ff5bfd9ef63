"""Command intake at the HTTP edge, end to end against real edge processes, Kafka, the workers and Redis:
Idempotency-Key replays, `?wait=` outcomes, batch intake (JSON array and NDJSON), rate limits shared by
two edge processes, and CORS from settings.

What the broker holds is read back from Kafka itself, so "published once" is counted where it matters.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from api_edge import command_ids, idempotency
from infra.settings import Settings
from invmon.cli import app as cli_app
from tests.e2e.conftest import ADMIN
from tests.e2e.support import new_sku, published, stock_offsets, wait_for_status
from tests.processes import Process, start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

PASSWORD = "edge-intake-password-0123"
PROBLEM_JSON = "application/problem+json"
SHOP = "https://shop.example"
PRINCIPAL_LIMIT = 100
CONFIGURED_BATCH_MAX = 5
CONFIGURED_BATCH_BYTES = 2048
WAIT_S = 25  # ?wait= seconds: the outcome normally comes in well under one; the headroom is for a busy box
RUN = uuid.uuid4().hex[:8]  # fresh users (and so fresh rate-limit keys) on every run


# --- helpers -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def add_user(name: str, *roles: str) -> None:
    role_args = [arg for role in roles for arg in ("--role", role)]
    result = CliRunner().invoke(
        cli_app, ["user", "add", name, *role_args, "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output


def login(port: int, name: str) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/auth/token", data={"username": name, "password": PASSWORD}, timeout=10.0
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.request.url}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    return body


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    command_id: str = response.json()["command_id"]
    status = await wait_for_status(edge, command_id)
    assert status["status"] == "applied", status
    return command_id


async def register(edge: httpx.AsyncClient, sku: str, initial: int = 0) -> None:
    await applied(
        edge, await edge.post("/v1/items", json={"sku": sku, "name": "Intake", "initial_quantity": initial})
    )


async def settle(edge: httpx.AsyncClient, sku: str) -> None:
    """A later command on the same SKU (same partition) is applied only after everything before it."""
    await applied(edge, await edge.post(f"/v1/items/{sku}/counts", json={"counted_quantity": 0}))


async def item(edge: httpx.AsyncClient, sku: str) -> dict[str, Any]:
    response = await edge.get(f"/v1/items/{sku}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ledger(edge: httpx.AsyncClient, sku: str) -> list[dict[str, Any]]:
    response = await edge.get(f"/v1/items/{sku}/ledger", params={"limit": 1000})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator_token(admin_token: str, stack: Settings) -> str:
    """Another principal with the operator role (stock commands, no prices)."""
    name = f"intake-operator-{RUN}"
    add_user(name, "operator")
    return login(stack.edge_port, name)


@pytest.fixture(scope="module")
def viewer_token(admin_token: str, stack: Settings) -> str:
    name = f"intake-viewer-{RUN}"
    add_user(name, "viewer")
    return login(stack.edge_port, name)


@dataclass(frozen=True)
class ExtraEdges:
    limited: list[Process]  # two edges: principal limit 100/minute, CORS for one origin, small batches
    unlimited: Process  # one edge with limits too high to matter


@pytest.fixture(scope="module")
def extra_edges(
    pipeline: dict[str, Process], stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExtraEdges]:
    """Three more edge processes (the Procfile's command) on the stack's Redis, Kafka and PostgreSQL,
    started together. The limited ones have a high IP limit so only the principal limit is under test."""
    limited = {
        "INVMON_RATE_LIMIT_PRINCIPAL": f"{PRINCIPAL_LIMIT}/minute",
        "INVMON_RATE_LIMIT_IP": "100000/minute",
        "INVMON_CORS_ORIGINS": json.dumps([SHOP]),
        "INVMON_BATCH_MAX_COMMANDS": str(CONFIGURED_BATCH_MAX),
        "INVMON_BATCH_MAX_BYTES": str(CONFIGURED_BATCH_BYTES),
    }
    unlimited = {"INVMON_RATE_LIMIT_PRINCIPAL": "1000000/minute", "INVMON_RATE_LIMIT_IP": "1000000/minute"}
    processes: list[Process] = []
    try:
        for env in (limited, limited, unlimited):
            port = free_port()
            log_dir: Path = tmp_path_factory.mktemp(f"edge-{port}")
            processes.append(start("edge", port, log_dir, env={"INVMON_EDGE_PORT": str(port), **env}))
        for process in processes:
            wait_ready(process)
        yield ExtraEdges(processes[:2], processes[2])
    finally:
        for process in processes:
            process.stop()


@pytest.fixture(scope="module")
def configured_edges(extra_edges: ExtraEdges) -> list[Process]:
    return extra_edges.limited


@pytest.fixture(scope="module")
def unlimited_edge(extra_edges: ExtraEdges) -> Process:
    return extra_edges.unlimited


# --- Idempotency-Key -----------------------------------------------------------------------------------


async def test_same_key_and_body_replays_the_answer_and_publishes_once(
    edge: httpx.AsyncClient, stack: Settings
) -> None:
    sku = new_sku()
    await register(edge, sku, initial=1)
    before = await stock_offsets(stack)
    key = {"Idempotency-Key": f"receipt-{uuid.uuid4()}"}
    first = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 5}, headers=key)
    second = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 5}, headers=key)

    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json() == second.json()
    assert (
        first.headers["location"]
        == second.headers["location"]
        == f"/v1/commands/{first.json()['command_id']}"
    )
    assert (await wait_for_status(edge, first.json()["command_id"]))["status"] == "applied"

    records = await published(stack, sku, before)
    assert [r["command_id"] for r in records] == [first.json()["command_id"]]
    await settle(edge, sku)
    receipts = [e for e in await ledger(edge, sku) if e["reason"] == "receive_stock"]
    assert [(e["command_id"], e["delta"]) for e in receipts] == [(first.json()["command_id"], 5)]


async def test_same_key_with_another_body_is_refused(edge: httpx.AsyncClient, stack: Settings) -> None:
    sku = new_sku()
    await register(edge, sku)
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 2}, headers=key)
    assert first.status_code == 202, first.text
    before = await stock_offsets(stack)

    other = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 3}, headers=key)
    problem = assert_problem(other, 422)
    assert problem["type"] == "/problems/idempotency-key-reused"
    other_path = await edge.post(f"/v1/items/{sku}/counts", json={"counted_quantity": 2}, headers=key)
    assert_problem(other_path, 422)

    assert await published(stack, sku, before) == []
    await settle(edge, sku)
    assert [e["delta"] for e in await ledger(edge, sku) if e["reason"] == "receive_stock"] == [2]


async def test_a_key_belongs_to_its_principal(
    edge: httpx.AsyncClient, operator_token: str, stack: Settings
) -> None:
    sku = new_sku()
    await register(edge, sku)
    key = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
    mine = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 4}, headers=key)
    theirs = await edge.post(
        f"/v1/items/{sku}/receipts", json={"quantity": 4}, headers={**key, **bearer(operator_token)}
    )
    assert mine.status_code == theirs.status_code == 202, (mine.text, theirs.text)
    assert mine.json()["command_id"] != theirs.json()["command_id"]
    for response in (mine, theirs):
        assert (await wait_for_status(edge, response.json()["command_id"]))["status"] == "applied"

    entries = [e for e in await ledger(edge, sku) if e["reason"] == "receive_stock"]
    assert sorted(e["actor"] for e in entries) == sorted([f"user:{ADMIN}", f"user:intake-operator-{RUN}"])
    assert (await item(edge, sku))["on_hand"] == 8


async def test_concurrent_requests_with_one_key_publish_once(
    edge: httpx.AsyncClient, stack: Settings
) -> None:
    sku = new_sku()
    await register(edge, sku)
    before = await stock_offsets(stack)
    key = {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    responses = await asyncio.gather(
        *(edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 1}, headers=key) for _ in range(20))
    )

    accepted = [r for r in responses if r.status_code == 202]
    in_progress = [r for r in responses if r.status_code == 409]
    assert len(accepted) + len(in_progress) == len(responses), [(r.status_code, r.text) for r in responses]
    assert accepted
    assert len({r.text for r in accepted}) == 1, [r.text for r in accepted]
    for response in in_progress:
        assert_problem(response, 409)
        assert response.headers["retry-after"] == "1"

    records = await published(stack, sku, before)
    assert [r["command_id"] for r in records] == [accepted[0].json()["command_id"]]
    await settle(edge, sku)
    assert [e["delta"] for e in await ledger(edge, sku) if e["reason"] == "receive_stock"] == [1]


async def test_many_concurrent_idempotent_requests_get_no_server_error(
    unlimited_edge: Process, admin_token: str
) -> None:
    # More requests in flight than a default redis-py pool (100) has connections: each needs Redis for its
    # rate limits and its Idempotency-Key claim.
    sku = new_sku()  # never registered: whatever is published is rejected by the worker, harmlessly
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{unlimited_edge.port}",
        headers=bearer(admin_token),
        limits=limits,
        timeout=60.0,
    ) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"/v1/items/{sku}/receipts",
                    json={"quantity": 1},
                    headers={"Idempotency-Key": f"{sku}-{i}"},
                )
                for i in range(400)
            )
        )
    statuses = collections.Counter(r.status_code for r in responses)
    assert statuses == {202: 400}, statuses


async def test_bad_idempotency_keys_are_refused(edge: httpx.AsyncClient) -> None:
    for key in ("", "k" * 201):
        response = await edge.post(
            f"/v1/items/{new_sku()}/receipts", json={"quantity": 1}, headers={"Idempotency-Key": key}
        )
        assert_problem(response, 400)


# --- ?wait= --------------------------------------------------------------------------------------------


async def test_wait_answers_the_applied_outcome(edge: httpx.AsyncClient) -> None:
    sku = new_sku()
    response = await edge.post(
        "/v1/items", params={"wait": WAIT_S}, timeout=WAIT_S + 15, json={"sku": sku, "name": "Waited"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["reason"]) == ("applied", None)
    assert response.headers["location"] == body["status_url"] == f"/v1/commands/{body['command_id']}"
    assert (await edge.get(body["status_url"])).json()["status"] == "applied"
    assert (await item(edge, sku))["version"] == 1


async def test_wait_answers_the_rejection_and_its_reason(edge: httpx.AsyncClient) -> None:
    unknown = await edge.post(
        f"/v1/items/{new_sku()}/receipts", params={"wait": WAIT_S}, timeout=WAIT_S + 15, json={"quantity": 1}
    )
    assert unknown.status_code == 200, unknown.text
    assert unknown.json()["status"] == "rejected"
    assert unknown.json()["reason"].startswith("unknown_sku"), unknown.json()

    sku = new_sku()
    await register(edge, sku, initial=5)
    reserve = {"reservation_id": "r-1", "quantity": 4}
    reserved = await edge.post(
        f"/v1/items/{sku}/reservations", params={"wait": WAIT_S}, timeout=WAIT_S + 15, json=reserve
    )
    assert (reserved.status_code, reserved.json()["status"]) == (200, "applied"), reserved.text
    below = await edge.post(
        f"/v1/items/{sku}/adjustments",
        params={"wait": WAIT_S},
        timeout=WAIT_S + 15,
        json={"delta": -2, "reason_code": "damage"},
    )
    assert below.status_code == 200, below.text
    assert below.json()["status"] == "rejected"
    assert below.json()["reason"].startswith("insufficient_stock"), below.json()
    status = (await edge.get(below.json()["status_url"])).json()
    assert (status["status"], status["reason"]) == ("rejected", below.json()["reason"])
    assert ((await item(edge, sku))["on_hand"], (await item(edge, sku))["reserved"]) == (5, 4)


async def test_wait_zero_answers_202_and_out_of_range_is_refused(edge: httpx.AsyncClient) -> None:
    sku = new_sku()
    response = await edge.post("/v1/items", params={"wait": 0}, json={"sku": sku, "name": "No wait"})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    assert (await wait_for_status(edge, response.json()["command_id"]))["status"] == "applied"
    for wait in ("-1", "31", "soon"):
        assert_problem(
            await edge.post(f"/v1/items/{sku}/receipts", params={"wait": wait}, json={"quantity": 1}), 422
        )


# --- batch intake --------------------------------------------------------------------------------------


async def test_batch_reports_errors_by_index_and_applies_the_valid_ones(edge: httpx.AsyncClient) -> None:
    sku = new_sku()
    items: list[Any] = [
        {"type": "register_item", "sku": sku, "name": "Batch", "initial_quantity": 5},
        {"type": "receive_stock", "sku": sku, "quantity": 0},
        {"type": "receive_stock", "sku": sku, "quantity": 3, "actor": "someone-else", "source": "forged"},
        {"type": "no_such_command", "sku": sku},
        "not an object",
        {"type": "adjust_stock", "sku": sku.lower(), "delta": -1, "reason_code": "damage"},
        {"type": "receive_stock", "quantity": 1},
    ]
    response = await edge.post("/v1/commands/stock:batch", json=items)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 3
    assert [c["index"] for c in body["command_ids"]] == [0, 2, 5]
    assert [e["index"] for e in body["errors"]] == [1, 3, 4, 6]
    for error in body["errors"]:
        assert error["errors"], error
        assert all(e["msg"] for e in error["errors"]), error
    assert body["errors"][0]["errors"][0]["loc"] == ["receive_stock", "quantity"], body["errors"][0]
    assert any("sku" in e["loc"] for e in body["errors"][3]["errors"]), body["errors"][3]

    for command in body["command_ids"]:
        assert (await wait_for_status(edge, command["command_id"]))["status"] == "applied", command
    state = await item(edge, sku)
    assert (state["on_hand"], state["version"]) == (7, 3)
    entries = await ledger(edge, sku)
    assert [e["command_id"] for e in entries] == [c["command_id"] for c in body["command_ids"]]
    assert {e["actor"] for e in entries} == {f"user:{ADMIN}"}  # the edge sets the actor, not the body


async def test_valid_batch_answers_each_id_as_stored(edge: httpx.AsyncClient, stack: Settings) -> None:
    """All valid: the one-call validation. An id the client sent is published as the id derived from it
    and the caller (a version-8 UUID, the same for any spelling of the client's id), the edge's own ids are
    canonical version-4 UUIDs, and the records on the broker carry the answered ids."""
    sku = new_sku()
    own = uuid.uuid4()
    since = await stock_offsets(stack)
    items = [
        {"type": "register_item", "sku": sku, "name": "Ids", "command_id": str(own).upper()},
        {"type": "receive_stock", "sku": sku, "quantity": 2},
    ]
    response = await edge.post("/v1/commands/stock:batch", json=items)
    assert response.status_code == 202, response.text
    ids = [c["command_id"] for c in response.json()["command_ids"]]
    assert ids[0] != str(own)
    assert uuid.UUID(ids[0]).version == 8
    assert ids[0] == str(command_ids.from_client(command_ids.key(stack), f"user:{ADMIN}", own))
    assert str(uuid.UUID(ids[1])) == ids[1]
    assert uuid.UUID(ids[1]).version == 4
    assert [r["command_id"] for r in await published(stack, sku, since)] == ids


async def test_batch_as_ndjson(edge: httpx.AsyncClient) -> None:
    sku = new_sku()
    lines = [
        {"type": "register_item", "sku": sku, "name": "Lines"},
        {"type": "receive_stock", "sku": sku, "quantity": 9},
    ]
    body = ("\n".join(json.dumps(line) for line in lines) + "\n\n").encode()
    response = await edge.post(
        "/v1/commands/stock:batch", content=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 202, response.text
    assert (response.json()["accepted"], response.json()["errors"]) == (2, [])
    for command in response.json()["command_ids"]:
        assert (await wait_for_status(edge, command["command_id"]))["status"] == "applied"
    assert (await item(edge, sku))["on_hand"] == 9


async def test_price_batch(edge: httpx.AsyncClient, operator_token: str) -> None:
    sku = new_sku()
    await register(edge, sku)
    items = [
        {"type": "set_price", "sku": sku, "currency": "EUR", "selling_price": "9.90", "cost_price": "5"},
        {"type": "set_price", "sku": sku, "currency": "EUR", "selling_price": "-1"},
        {"type": "receive_stock", "sku": sku, "quantity": 1},  # a stock command is not a price command
    ]
    response = await edge.post("/v1/commands/price:batch", json=items)
    assert response.status_code == 202, response.text
    assert [c["index"] for c in response.json()["command_ids"]] == [0]
    assert [e["index"] for e in response.json()["errors"]] == [1, 2]
    status = await wait_for_status(edge, response.json()["command_ids"][0]["command_id"])
    assert status["status"] == "applied", status
    prices = (await edge.get(f"/v1/items/{sku}/prices")).json()["prices"]
    assert [p["effective_price"] for p in prices if p["currency"] == "EUR"] == ["9.9000"]

    operator = await edge.post("/v1/commands/price:batch", json=items[:1], headers=bearer(operator_token))
    assert_problem(operator, 403)


async def test_batch_of_only_invalid_commands_is_a_422_problem(
    edge: httpx.AsyncClient, stack: Settings
) -> None:
    sku = new_sku()
    before = await stock_offsets(stack)
    items = [{"type": "receive_stock", "sku": sku, "quantity": -1}, {"type": "receive_stock", "sku": sku}]
    headers = {"Idempotency-Key": f"invalid-{sku}"}
    for _ in range(2):  # nothing was accepted, so the same key may be sent again and is judged again
        response = await edge.post("/v1/commands/stock:batch", json=items, headers=headers)
        problem = assert_problem(response, 422)
        assert [e["index"] for e in problem["errors"]] == [0, 1], problem
        assert all(e["errors"] for e in problem["errors"]), problem
    assert await published(stack, sku, before) == []


async def test_batch_size_limits(
    edge: httpx.AsyncClient, stack: Settings, configured_edges: list[Process]
) -> None:
    too_many = await edge.post("/v1/commands/stock:batch", json=[{}] * (stack.batch_max_commands + 1))
    assert "commands" in assert_problem(too_many, 413)["detail"]

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{configured_edges[0].port}", headers=edge.headers, timeout=10.0
    ) as small:
        # Exactly the limit passes the count check (all invalid: 422); one more is refused before validation.
        at_limit = await small.post("/v1/commands/stock:batch", json=[{}] * CONFIGURED_BATCH_MAX)
        assert at_limit.status_code == 422, at_limit.text
        over = await small.post("/v1/commands/stock:batch", json=[{}] * (CONFIGURED_BATCH_MAX + 1))
        assert "commands" in assert_problem(over, 413)["detail"]

        big = [{"type": "receive_stock", "sku": new_sku(), "quantity": 1, "note": "x"}] * 60
        declared = await small.post("/v1/commands/stock:batch", json=big)
        assert "bytes" in assert_problem(declared, 413)["detail"]

        async def chunks() -> Any:  # no Content-Length: the edge must count the bytes as they stream in
            for _ in range(4):
                yield b" " * 1000
            yield b"[]"

        streamed = await small.post("/v1/commands/stock:batch", content=chunks())
        assert "content-length" not in streamed.request.headers
        assert "bytes" in assert_problem(streamed, 413)["detail"]


async def test_malformed_batches_are_refused(edge: httpx.AsyncClient) -> None:
    cases: list[tuple[bytes, str, int]] = [
        (b'[{"type": "receive_stock", ', "application/json", 400),
        (b'{"type": "receive_stock"}\n{"type": ', "application/x-ndjson", 400),
        (b"\xff\xfe[", "application/json", 400),
        (b'{"type": "receive_stock", "sku": "A-1", "quantity": 1}', "application/json", 422),
    ]
    for content, kind, status in cases:
        response = await edge.post(
            "/v1/commands/stock:batch", content=content, headers={"Content-Type": kind}
        )
        problem = assert_problem(response, status)
        assert "Traceback" not in response.text, problem
        assert ".py" not in response.text, problem


async def test_viewer_may_not_send_batches(edge: httpx.AsyncClient, viewer_token: str) -> None:
    for path in ("/v1/commands/stock:batch", "/v1/commands/price:batch"):
        response = await edge.post(
            path, json=[{"type": "receive_stock", "sku": "V-1"}], headers=bearer(viewer_token)
        )
        assert_problem(response, 403)


async def test_batch_with_idempotency_key_replays_and_derives_its_ids(
    edge: httpx.AsyncClient, stack: Settings
) -> None:
    sku = new_sku()
    items = [
        {"type": "register_item", "sku": sku, "name": "Derived", "initial_quantity": 1},
        {"type": "receive_stock", "sku": sku, "quantity": 2},
        {"type": "receive_stock", "sku": sku, "quantity": 0},
    ]
    key = f"batch-{uuid.uuid4()}"
    headers = {"Idempotency-Key": key}
    first = await edge.post("/v1/commands/stock:batch", json=items, headers=headers)
    assert first.status_code == 202, first.text
    ids = [c["command_id"] for c in first.json()["command_ids"]]
    assert len(set(ids)) == 2

    replay = await edge.post("/v1/commands/stock:batch", json=items, headers=headers)
    assert (replay.status_code, replay.json()) == (202, first.json())
    assert_problem(await edge.post("/v1/commands/stock:batch", json=items[:2], headers=headers), 422)

    # Redis forgets the answer (expiry, flush): the retry publishes again, under the same derived ids,
    # and the pipeline applies each command once.
    redis = Redis.from_url(stack.redis_url)
    try:
        assert await redis.delete(idempotency.redis_key(f"user:{ADMIN}", key)) == 1
    finally:
        await redis.aclose()
    before = await stock_offsets(stack)
    again = await edge.post("/v1/commands/stock:batch", json=items, headers=headers)
    assert (again.status_code, again.json()) == (202, first.json())
    assert sorted(r["command_id"] for r in await published(stack, sku, before)) == sorted(ids)

    for command_id in ids:
        assert (await wait_for_status(edge, command_id))["status"] == "applied"
    await settle(edge, sku)
    receipts = [e for e in await ledger(edge, sku) if e["reason"] == "receive_stock"]
    assert [(e["command_id"], e["delta"]) for e in receipts] == [(ids[1], 2)]


# --- rate limits shared by two edge processes -------------------------------------------------------------


async def burst(
    edges: list[Process], principal: str, requests: int, in_flight: int | None
) -> list[httpx.Response]:
    """`requests` GETs from one fresh principal, alternating over `edges`; at most `in_flight` at a time
    (None: all at once). A read of an unknown item is the cheapest authenticated request: 404."""
    await asyncio.to_thread(add_user, principal, "viewer")
    token = await asyncio.to_thread(login, edges[0].port, principal)
    urls = [f"http://127.0.0.1:{p.port}/v1/items/RL-{RUN}" for p in edges]
    gate = asyncio.Semaphore(in_flight or requests)
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(headers=bearer(token), limits=limits, timeout=60.0) as client:

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.get(urls[i % len(urls)])

        return await asyncio.gather(*(one(i) for i in range(requests)))


def check_limited(responses: list[httpx.Response], edges: list[Process]) -> None:
    passed = [r for r in responses if r.status_code != 429]
    limited = [r for r in responses if r.status_code == 429]
    assert {r.status_code for r in passed} <= {404}, {r.status_code for r in passed}
    assert 0 < len(passed) <= PRINCIPAL_LIMIT, f"{len(passed)} of {len(responses)} passed"
    # The limiter's window opens at its first hit, so a burst of a few seconds lies in one fresh window:
    # the fresh principal gets exactly its limit, however the requests are spread over the edges.
    assert len(passed) == PRINCIPAL_LIMIT
    assert {r.url.port for r in passed} == {p.port for p in edges}

    for response in limited:
        assert_problem(response, 429)
        assert int(response.headers["retry-after"]) >= 1
        assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(response.headers)
    for response in passed:
        assert response.headers["ratelimit-limit"] == str(PRINCIPAL_LIMIT)
        assert 0 <= int(response.headers["ratelimit-reset"]) <= 120
    # Each answer reads the window after its own hit, so concurrent answers may repeat a value; the one
    # that took the last unit sees 0.
    remaining = [int(r.headers["ratelimit-remaining"]) for r in passed]
    assert min(remaining) == 0, remaining
    assert max(remaining) < PRINCIPAL_LIMIT, remaining


async def test_one_principal_limit_is_shared_by_two_edges(configured_edges: list[Process]) -> None:
    responses = await burst(configured_edges, f"intake-limited-{RUN}", 1000, in_flight=32)
    check_limited(responses, configured_edges)


async def test_thousand_concurrent_requests_on_one_key_pass_at_most_the_limit(
    configured_edges: list[Process],
) -> None:
    # All at once: far more rate-limit checks in flight in each edge than connections in a default pool.
    responses = await burst(configured_edges, f"intake-burst-{RUN}", 1000, in_flight=None)
    check_limited(responses, configured_edges)


async def test_a_429_reports_the_limit_that_refused_it(configured_edges: list[Process]) -> None:
    responses = await burst(configured_edges[:1], f"intake-over-{RUN}", PRINCIPAL_LIMIT + 1, in_flight=8)
    assert [r.status_code for r in responses].count(429) == 1
    refused = next(r for r in responses if r.status_code == 429)
    reset = int(refused.headers["ratelimit-reset"])
    assert (refused.headers["ratelimit-limit"], refused.headers["ratelimit-remaining"]) == ("100", "0")
    assert 1 <= int(refused.headers["retry-after"]) <= max(reset, 1) <= 60


async def test_successful_answers_carry_ratelimit_headers(edge: httpx.AsyncClient, stack: Settings) -> None:
    response = await edge.get(f"/v1/commands/{uuid.uuid4()}")
    assert response.status_code == 200, response.text
    limit = int(response.headers["ratelimit-limit"])
    assert limit > 0
    assert 0 <= int(response.headers["ratelimit-remaining"]) < limit
    assert int(response.headers["ratelimit-reset"]) >= 0
    accepted = await edge.post(f"/v1/items/{new_sku()}/receipts", json={"quantity": 1})
    assert accepted.status_code == 202, accepted.text
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(accepted.headers)


# --- CORS ----------------------------------------------------------------------------------------------


async def test_cors_allows_only_the_configured_origin(
    configured_edges: list[Process], stack: Settings, operator_token: str
) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{configured_edges[1].port}", timeout=10.0
    ) as cors:
        allowed = await cors.options("/v1/items", headers={"Origin": SHOP, **preflight})
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == SHOP
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()

        refused = await cors.options("/v1/items", headers={"Origin": "https://evil.example", **preflight})
        assert refused.status_code >= 400
        assert "access-control-allow-origin" not in refused.headers

        simple = await cors.get("/health/live", headers={"Origin": SHOP})
        assert simple.headers["access-control-allow-origin"] == SHOP
        assert "ratelimit-remaining" in simple.headers["access-control-expose-headers"].lower()
        other = await cors.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers

        # A command a browser sends: the fast path hands it to FastAPI, whose CORS middleware answers.
        command = await cors.post(
            f"/v1/items/{new_sku()}/receipts",
            json={"quantity": 1},
            headers={"Origin": SHOP, **bearer(operator_token)},
        )
        assert command.status_code == 202, command.text
        assert command.headers["access-control-allow-origin"] == SHOP

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.edge_port}", timeout=10.0) as plain:
        default = await plain.options("/v1/items", headers={"Origin": SHOP, **preflight})
        assert "access-control-allow-origin" not in default.headers
