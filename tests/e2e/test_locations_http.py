"""Stock locations end to end: `/v1/locations` and `invmon location` against the real edge and PostgreSQL,
each write with its admin_audit row; the rules (409 on a duplicate code or on deactivating `default`, 404
on an unknown code) answered as problem+json."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from infra.settings import Settings
from invmon.cli import app as cli_app
from tests.e2e.support import user_token
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

PASSWORD = "locations-password-0123"
PROBLEM_JSON = "application/problem+json"


def new_code(prefix: str = "WH") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture(scope="module")
def viewer_login(pipeline: dict[str, Process], stack: Settings) -> str:
    return user_token(stack.edge_port, f"loc-viewer-{uuid.uuid4().hex[:6]}", "viewer", PASSWORD)


@pytest.fixture(scope="module")
def operator_login(pipeline: dict[str, Process], stack: Settings) -> str:
    return user_token(stack.edge_port, f"loc-operator-{uuid.uuid4().hex[:6]}", "operator", PASSWORD)


def _client(stack: Settings, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack.edge_port}",
        timeout=10.0,
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.fixture
async def viewer(viewer_login: str, stack: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(stack, viewer_login) as client:
        yield client


@pytest.fixture
async def operator(operator_login: str, stack: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(stack, operator_login) as client:
        yield client


async def audited(edge: httpx.AsyncClient, target: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, actor, details) of the audit rows on `target`, oldest first."""
    response = await edge.get("/v1/admin/audit", params={"limit": 500})
    assert response.status_code == 200, response.text
    rows = [r for r in reversed(response.json()["items"]) if r["target"] == target]
    return [(r["action"], r["actor"], r["details"]) for r in rows]


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_admin_creates_lists_and_changes_a_location_each_write_audited(
    edge: httpx.AsyncClient, viewer: httpx.AsyncClient
) -> None:
    code = new_code()
    created = await edge.post("/v1/locations", json={"code": code, "name": "Berlin DC", "kind": "warehouse"})
    assert created.status_code == 201, created.text
    assert {k: created.json()[k] for k in ("code", "name", "kind", "is_active")} == {
        "code": code,
        "name": "Berlin DC",
        "kind": "warehouse",
        "is_active": True,
    }

    listed = await viewer.get("/v1/locations")
    assert listed.status_code == 200, listed.text
    codes = [row["code"] for row in listed.json()]
    assert codes == sorted(codes)
    assert {"default", code} <= set(codes)

    renamed = await edge.patch(f"/v1/locations/{code}", json={"name": "Berlin East", "kind": "store"})
    assert renamed.status_code == 200, renamed.text
    closed = await edge.patch(f"/v1/locations/{code}", json={"is_active": False})
    assert (closed.json()["name"], closed.json()["kind"], closed.json()["is_active"]) == (
        "Berlin East",
        "store",
        False,
    )
    still_listed = {row["code"]: row for row in (await viewer.get("/v1/locations")).json()}
    assert still_listed[code]["is_active"] is False

    rows = await audited(edge, f"location:{code}")
    assert [(action, details) for action, _, details in rows] == [
        ("location.create", {"name": "Berlin DC", "kind": "warehouse"}),
        ("location.update", {"changes": {"name": "Berlin East", "kind": "store"}}),
        ("location.update", {"changes": {"is_active": False}}),
    ]
    assert all(actor.startswith("user:") for _, actor, _ in rows)


async def test_refusals_are_problems_and_leave_no_audit_row(edge: httpx.AsyncClient) -> None:
    code = new_code()
    first = await edge.post("/v1/locations", json={"code": code, "name": "A", "kind": "store"})
    assert first.status_code == 201, first.text
    duplicate = await edge.post("/v1/locations", json={"code": code, "name": "B", "kind": "virtual"})
    assert "exists" in problem(duplicate, 409)["detail"]
    assert (
        "cannot be deactivated"
        in problem(await edge.patch("/v1/locations/default", json={"is_active": False}), 409)["detail"]
    )
    unknown = new_code("NOWHERE")
    problem(await edge.patch(f"/v1/locations/{unknown}", json={"name": "x"}), 404)
    problem(await edge.post("/v1/locations", json={"code": "-bad", "name": "x", "kind": "store"}), 422)
    problem(await edge.post("/v1/locations", json={"code": new_code(), "name": "x", "kind": "shed"}), 422)
    problem(await edge.patch(f"/v1/locations/{code}", json={}), 422)

    assert [a for a, _, _ in await audited(edge, f"location:{code}")] == ["location.create"]
    assert await audited(edge, "location:default") == []
    assert await audited(edge, f"location:{unknown}") == []
    default = {row["code"]: row for row in (await edge.get("/v1/locations")).json()}["default"]
    assert default["is_active"] is True
    assert default["name"] == "Default location"


async def test_only_admins_write_locations(
    viewer: httpx.AsyncClient, operator: httpx.AsyncClient, edge: httpx.AsyncClient
) -> None:
    code = new_code()
    body = {"code": code, "name": "Shop", "kind": "store"}
    for client in (viewer, operator):
        problem(await client.post("/v1/locations", json=body), 403)
        problem(await client.patch("/v1/locations/default", json={"name": "mine"}), 403)
        assert (await client.get("/v1/locations")).status_code == 200
    async with httpx.AsyncClient(base_url=str(edge.base_url), timeout=10.0) as anonymous:
        problem(await anonymous.get("/v1/locations"), 401)
    assert code not in {row["code"] for row in (await edge.get("/v1/locations")).json()}


def cli(*args: str, exit_code: int = 0) -> str:
    """`invmon ...` in-process; blocking (it runs its own event loop): call it through a thread."""
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == exit_code, result.output
    return result.output


async def test_cli_adds_lists_and_updates_locations_audited_as_local(edge: httpx.AsyncClient) -> None:
    code = new_code("STORE")
    assert f"location {code} (store) added" in await asyncio.to_thread(
        cli, "location", "add", code, "--name", "Shop one", "--kind", "store"
    )
    assert "exists" in await asyncio.to_thread(cli, "location", "add", code, "--name", "again", exit_code=1)
    listed = await asyncio.to_thread(cli, "location", "list")
    assert code in listed
    assert "Shop one" in listed
    assert "default" in listed
    updated = await asyncio.to_thread(cli, "location", "update", code, "--name", "Shop 1", "--inactive")
    assert f"location {code}: Shop 1 (store, inactive)" in updated
    assert "cannot be deactivated" in await asyncio.to_thread(
        cli, "location", "update", "default", "--inactive", exit_code=1
    )
    assert "no location" in await asyncio.to_thread(
        cli, "location", "update", new_code("NOWHERE"), "--active", exit_code=1
    )
    await asyncio.to_thread(cli, "location", "add", "-bad", "--name", "x", exit_code=2)
    await asyncio.to_thread(cli, "location", "add", new_code(), "--name", "x", "--kind", "shed", exit_code=2)
    await asyncio.to_thread(cli, "location", "update", code, exit_code=2)

    seen = {row["code"]: row for row in (await edge.get("/v1/locations")).json()}[code]
    assert (seen["name"], seen["kind"], seen["is_active"]) == ("Shop 1", "store", False)
    rows = await audited(edge, f"location:{code}")
    assert [(action, details) for action, _, details in rows] == [
        ("location.create", {"name": "Shop one", "kind": "store"}),
        ("location.update", {"changes": {"name": "Shop 1", "is_active": False}}),
    ]
    assert all(actor.startswith("cli:") and len(actor) > len("cli:") for _, actor, _ in rows)
