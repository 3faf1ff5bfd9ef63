"""Command ids and bodies at the edge, as an attacker would try them, against the real pipeline:
- one principal cannot make another's command a duplicate (by its client id or its Idempotency-Key), nor
  read its outcome; Idempotency-Keys of principals whose names collide when joined with ':' stay apart;
- a batch refuses the schedulers' commands and repeated command ids, by index;
- bodies are refused before they are read: over the size limit (413, while the client is still sending),
  or without credentials (401, with the body never sent);
- JSON nested 1,000 deep or with a 4,400-digit integer gets 413/422 problem+json, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from tests.e2e.support import new_sku, user_token, wait_for_status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

PASSWORD = "command-scope-password-0123"
PROBLEM_JSON = "application/problem+json"
RUN = uuid.uuid4().hex[:8]
WAIT_S = 25  # ?wait= seconds: the outcome normally comes in well under one
OLD_NAMESPACE = uuid.UUID("5b0c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4")  # the public namespace ids came from


def client(stack: Settings, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.edge_port}", headers=headers, timeout=40.0)


async def new_user(stack: Settings, name: str, role: str = "operator") -> httpx.AsyncClient:
    token = await asyncio.to_thread(user_token, stack.edge_port, name, role, PASSWORD)
    return client(stack, token)


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    command_id: str = response.json()["command_id"]
    assert (await wait_for_status(edge, command_id))["status"] == "applied"
    return command_id


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, f"{response.request.url}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code, body
    return body


# --- command ids across principals ---------------------------------------------------------------------


async def test_a_squatter_cannot_preempt_another_principals_command(
    edge: httpx.AsyncClient, stack: Settings
) -> None:
    """A sends, first, commands carrying every id B's next requests could get: B's own client id, and the id
    B's Idempotency-Key derived before (a uuid5 of a public namespace). B's commands still apply, and B
    reads its own outcomes."""
    squatter = await new_user(stack, f"squat-a-{RUN}")
    victim = await new_user(stack, f"squat-b-{RUN}")
    async with squatter, victim:
        sku = new_sku()
        await applied(edge, await edge.post("/v1/items", json={"sku": sku, "name": "Squat"}))
        client_id, key = str(uuid.uuid4()), f"receipt-{RUN}"
        would_be = str(uuid.uuid5(OLD_NAMESPACE, f"user:squat-b-{RUN}\n{key}"))
        # Rejected commands (no such item), each under an id or key B is about to use.
        missing = f"/v1/items/{new_sku()}/receipts"
        squats = [
            await squatter.post(missing, json={"quantity": 1, "command_id": client_id}),
            await squatter.post(missing, json={"quantity": 1, "command_id": would_be}),
            await squatter.post(missing, json={"quantity": 1}, headers={"Idempotency-Key": key}),
        ]
        for squat in squats:
            assert squat.status_code == 202, squat.text
            outcome = await wait_for_status(squatter, squat.json()["command_id"])
            assert outcome["status"] == "rejected", outcome

        by_id = await victim.post(
            f"/v1/items/{sku}/receipts",
            params={"wait": WAIT_S},
            json={"quantity": 2, "command_id": client_id},
        )
        by_key = await victim.post(
            f"/v1/items/{sku}/receipts",
            params={"wait": WAIT_S},
            json={"quantity": 3},
            headers={"Idempotency-Key": key},
        )
        for response in (by_id, by_key):
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "applied", response.json()
            assert response.json()["command_id"] not in {client_id, would_be}
        assert (await edge.get(f"/v1/items/{sku}")).json()["on_hand"] == 5

        # A retry by B of the same client id is the same command, applied once.
        again = await victim.post(f"/v1/items/{sku}/receipts", json={"quantity": 2, "command_id": client_id})
        assert again.json()["command_id"] == by_id.json()["command_id"]


async def test_only_the_sender_and_admins_read_an_outcome(edge: httpx.AsyncClient, stack: Settings) -> None:
    sender = await new_user(stack, f"reader-a-{RUN}")
    other = await new_user(stack, f"reader-b-{RUN}", "viewer")
    async with sender, other:
        sku = new_sku()
        response = await sender.post("/v1/items", json={"sku": sku, "name": "Private"})
        command_id = await applied(sender, response)
        assert (await edge.get(f"/v1/commands/{command_id}")).json()["status"] == "applied"  # the admin
        # To anyone else it is exactly what an id never sent is: nothing tells them it exists.
        theirs = await other.get(f"/v1/commands/{command_id}")
        never_sent = uuid.uuid4()
        unknown = await other.get(f"/v1/commands/{never_sent}")
        assert theirs.status_code == unknown.status_code == 200
        assert {**theirs.json(), "command_id": None} == {**unknown.json(), "command_id": None}
        assert theirs.json()["status"] == "unknown"


async def test_idempotency_keys_of_colliding_principals_stay_apart(
    edge: httpx.AsyncClient, stack: Settings
) -> None:
    """`user:c:x` with key `y` and `user:c` with key `x:y` joined to the same Redis key: the second got
    the first one's answer and its command was never published."""
    first = await new_user(stack, f"c{RUN}:x")
    second = await new_user(stack, f"c{RUN}")
    async with first, second:
        sku = new_sku()
        await applied(edge, await edge.post("/v1/items", json={"sku": sku, "name": "Colliding"}))
        path, body = f"/v1/items/{sku}/receipts", {"quantity": 1}
        one = await first.post(path, json=body, headers={"Idempotency-Key": "y"})
        two = await second.post(path, json=body, headers={"Idempotency-Key": "x:y"})
        ids = {await applied(edge, one), await applied(edge, two)}
        assert len(ids) == 2
        assert (await edge.get(f"/v1/items/{sku}")).json()["on_hand"] == 2


# --- batch refusals ------------------------------------------------------------------------------------


async def test_a_batch_refuses_scheduler_commands_and_repeated_ids_by_index(edge: httpx.AsyncClient) -> None:
    sku, own = new_sku(), str(uuid.uuid4())
    items = [
        {"type": "register_item", "sku": sku, "name": "Batch", "command_id": own},
        {"type": "expire_reservation", "sku": sku, "reservation_id": "r-1"},
        {"type": "receive_stock", "sku": sku, "quantity": 4},
        {"type": "receive_stock", "sku": sku, "quantity": 5, "command_id": own},
    ]
    response = await edge.post("/v1/commands/stock:batch", json=items)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert [e["index"] for e in answer["errors"]] == [1, 3]
    assert "expire_reservation" in answer["errors"][0]["errors"][0]["msg"]
    assert answer["errors"][1]["errors"][0]["loc"] == ["command_id"]
    accepted = {c["index"]: c["command_id"] for c in answer["command_ids"]}
    assert sorted(accepted) == [0, 2]
    assert accepted[0] != own
    for command_id in accepted.values():
        assert (await wait_for_status(edge, command_id))["status"] == "applied"
    assert (await edge.get(f"/v1/items/{sku}")).json()["on_hand"] == 4

    change = str(uuid.uuid4())
    scheduled = [
        {"type": kind, "sku": sku, "change_id": change}
        for kind in ("activate_scheduled_price", "expire_scheduled_price")
    ]
    refused = assert_problem(await edge.post("/v1/commands/price:batch", json=scheduled), 422)
    assert [e["index"] for e in refused["errors"]] == [0, 1]


# --- bodies --------------------------------------------------------------------------------------------


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    sent: int  # body bytes the client had sent when the answer's head arrived


async def send_raw(port: int, head: str, body_size: int, *, chunked: bool) -> RawAnswer:
    """An HTTP/1.1 request over a plain socket: the head, then up to `body_size` bytes of body (JSON
    whitespace) while the answer is awaited. The answer may come before the body is all sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0

    async def send_body() -> None:
        nonlocal sent
        chunk = b" " * 65536
        with contextlib.suppress(ConnectionError):  # the edge may close once it has answered
            # Once the edge has closed, asyncio discards writes and drain() returns at once: stop counting.
            while sent < body_size and not writer.transport.is_closing():
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                await writer.drain()
                if writer.transport.is_closing():
                    break
                sent += len(chunk)
                # drain() yields only when the edge stops reading; uvicorn reads on (and throws away) what
                # follows an early answer, so without a turn here the reader would see the answer only
                # after everything was sent.
                await asyncio.sleep(0)

    writer.write(head.encode("latin-1"))
    await writer.drain()
    sender = asyncio.create_task(send_body())
    try:
        status_line = await asyncio.wait_for(reader.readline(), 30)
        at_answer = sent
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), 30)) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()
    return RawAnswer(int(status_line.split()[1]), headers, at_answer)


def head(path: str, token: str | None, *, length: int | None, extra: str = "") -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines) + "\r\n" + extra + "\r\n"


HUNDRED_MB = 100 * 1024 * 1024


@pytest.mark.parametrize("declared", [True, False], ids=["Content-Length", "chunked"])
@pytest.mark.parametrize(
    "path", ["/v1/commands/stock:batch", "/v1/items/SIZE-1/receipts"], ids=["batch", "single"]
)
async def test_a_huge_body_is_refused_while_it_is_still_being_sent(
    path: str, declared: bool, admin_token: str, stack: Settings
) -> None:
    """With an Idempotency-Key (whose fingerprint read the whole body before), 100 MB announced or
    streamed: 413 arrives while most of it is still unsent."""
    key = f"Idempotency-Key: huge-{uuid.uuid4()}\r\n"
    request = head(path, admin_token, length=HUNDRED_MB if declared else None, extra=key)
    answer = await send_raw(stack.edge_port, request, HUNDRED_MB, chunked=not declared)
    assert answer.status == 413
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.sent < HUNDRED_MB // 2


@pytest.mark.parametrize(
    "path", ["/v1/commands/stock:batch", "/v1/items/SIZE-1/receipts", "/v1/items"], ids=str
)
@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["anonymous", "bad token"])
async def test_a_request_without_valid_credentials_is_refused_before_its_body_is_read(
    path: str, token: str | None, stack: Settings
) -> None:
    """The body is announced but never sent: an edge that read it first would wait for it forever."""
    answer = await send_raw(stack.edge_port, head(path, token, length=60_000), 0, chunked=False)
    assert answer.status == 401
    assert answer.headers["content-type"] == PROBLEM_JSON


DEEP = "[" * 1000 + "]" * 1000
HUGE = "9" * 4400


def stock_batch_cases() -> list[tuple[str, str]]:
    receipt = '{"type": "receive_stock", "sku": "JSON-1", "quantity": %s}'
    return [
        ("application/json", DEEP),
        ("application/json", "[" + receipt % DEEP + "]"),
        ("application/json", "[" + receipt % HUGE + "]"),
        ("application/x-ndjson", receipt % DEEP),
        ("application/x-ndjson", receipt % 1 + "\n" + receipt % HUGE),
        ("application/x-ndjson", DEEP),
    ]


@pytest.mark.parametrize(("kind", "text"), stock_batch_cases(), ids=lambda v: str(v)[:24])
async def test_deep_or_huge_json_in_a_batch_is_refused(edge: httpx.AsyncClient, kind: str, text: str) -> None:
    response = await edge.post("/v1/commands/stock:batch", content=text, headers={"Content-Type": kind})
    assert_problem(response, 413, 422)


@pytest.mark.parametrize("value", [DEEP, HUGE, "-" + HUGE], ids=["deep", "huge", "huge negative"])
@pytest.mark.parametrize("how", ["fast path", "Idempotency-Key", "?wait="])
async def test_deep_or_huge_json_in_a_single_command_is_refused(
    edge: httpx.AsyncClient, value: str, how: str
) -> None:
    headers = {"Content-Type": "application/json"}
    params = {}
    if how == "Idempotency-Key":
        headers["Idempotency-Key"] = f"json-{uuid.uuid4()}"
    elif how == "?wait=":
        params["wait"] = 1
    for body in (f'{{"quantity": {value}}}', f'{{"quantity": 1, "command_id": {value}}}', value):
        response = await edge.post("/v1/items/JSON-1/receipts", content=body, headers=headers, params=params)
        assert_problem(response, 413, 422)
    nested = json.dumps({"sku": new_sku(), "name": "x"})[:-1] + f', "category": {value}}}'
    assert_problem(await edge.post("/v1/items", content=nested, headers=headers, params=params), 413, 422)
