"""The admin API (users, API keys) and the admin audit trail, end to end against the real edge process.

Every admin action leaves one row in `admin_audit` (who, what, on what, from which address), through the
API, the CLI and the price-decision routes; the table itself refuses UPDATE, DELETE and TRUNCATE.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from infra.settings import Settings
from invmon.cli import app as cli_app
from tests.e2e.support import new_sku, user_token
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

PASSWORD = "admin-audit-password-0123"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def admin_name() -> str:
    return unique("audit-admin")


@pytest.fixture(scope="module")
def base_url(pipeline: dict[str, Process], stack: Settings) -> str:
    return f"http://127.0.0.1:{stack.edge_port}"


@pytest.fixture(scope="module")
def admin_login(base_url: str, stack: Settings, admin_name: str) -> str:
    """An admin of this module alone, so its actions are the only ones under its name in the trail."""
    return user_token(stack.edge_port, admin_name, "admin", PASSWORD)


@pytest.fixture
async def admin(base_url: str, admin_login: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {admin_login}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0, headers=headers) as client:
        yield client


@pytest.fixture
async def anonymous(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        yield client


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/auth/token", data={"username": username, "password": password})


async def trail(admin: httpx.AsyncClient, **filters: Any) -> list[dict[str, Any]]:
    response = await admin.get("/v1/admin/audit", params={"limit": 500, **filters})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def actions_by(admin: httpx.AsyncClient, actor: str) -> list[tuple[str, str]]:
    """(action, target) of every row by `actor`, oldest first."""
    return [(row["action"], row["target"]) for row in reversed(await trail(admin, actor=actor))]


# --- users ----------------------------------------------------------------------------------------------


async def test_user_lifecycle_through_the_admin_api(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, admin_name: str
) -> None:
    name = unique("api-user")
    created = await admin.post(
        "/v1/admin/users", json={"username": name, "password": PASSWORD, "roles": ["viewer", "viewer"]}
    )
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == ["viewer"]
    assert created.json()["active"] is True
    assert "password" not in created.text
    assert "hash" not in created.text
    taken = await admin.post(
        "/v1/admin/users", json={"username": name, "password": PASSWORD, "roles": ["admin"]}
    )
    assert taken.status_code == 409, taken.text

    first = await login(anonymous, name)
    assert first.status_code == 200, first.text
    token = first.json()["access_token"]

    promoted = await admin.patch(f"/v1/admin/users/{name}", json={"roles": ["viewer", "operator"]})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["roles"] == ["operator", "viewer"]
    new_password = PASSWORD + "-new"
    assert (await admin.patch(f"/v1/admin/users/{name}", json={"password": new_password})).status_code == 200
    assert (await login(anonymous, name)).status_code == 401  # the old password no longer works
    assert (await login(anonymous, name, new_password)).status_code == 200

    deactivated = await admin.post(f"/v1/admin/users/{name}/deactivate")
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["active"] is False
    assert (await login(anonymous, name, new_password)).status_code == 401
    refresh = await anonymous.post("/v1/auth/refresh", headers={"Authorization": f"Bearer {token}"})
    assert refresh.status_code == 401, refresh.text
    listed = {u["username"]: u for u in (await admin.get("/v1/admin/users")).json()}
    assert listed[name]["active"] is False

    again = await admin.post(f"/v1/admin/users/{name}/deactivate")  # no change, no second record
    assert again.status_code == 200
    assert again.json()["active"] is False
    reactivated = await admin.post(f"/v1/admin/users/{name}/reactivate")
    assert reactivated.status_code == 200
    assert reactivated.json()["active"] is True
    assert (await login(anonymous, name, new_password)).status_code == 200

    assert (await admin.get(f"/v1/admin/users/{unique('nobody')}")).status_code == 404
    me = await admin.post(f"/v1/admin/users/{admin_name}/deactivate")
    assert me.status_code == 409, me.text
    demote_me = await admin.patch(f"/v1/admin/users/{admin_name}", json={"roles": ["viewer"]})
    assert demote_me.status_code == 409, demote_me.text

    rows = [row for row in await trail(admin, actor=f"user:{admin_name}") if row["target"] == f"user:{name}"]
    assert [row["action"] for row in reversed(rows)] == [
        "user.create",
        "user.update",
        "user.update",
        "user.deactivate",
        "user.reactivate",
    ]
    assert rows[-1]["details"] == {"roles": ["viewer"]}
    assert rows[-2]["details"] == {"roles": ["operator", "viewer"], "password_changed": False}
    assert rows[-3]["details"] == {"password_changed": True}  # that it changed, never what to
    assert all(row["client"] == "127.0.0.1" for row in rows)
    assert new_password not in str(rows)
    assert PASSWORD not in str(rows)


@pytest.mark.parametrize(
    "body",
    [
        {"username": "short-password", "password": "elevenchars", "roles": ["viewer"]},
        {"username": "no-roles", "password": PASSWORD, "roles": []},
        {"username": "bad-role", "password": PASSWORD, "roles": ["root"]},
        {"username": "line\nbreak", "password": PASSWORD, "roles": ["viewer"]},
        {"username": "", "password": PASSWORD, "roles": ["viewer"]},
        {"username": "x" * 101, "password": PASSWORD, "roles": ["viewer"]},
        {"username": "extra", "password": PASSWORD, "roles": ["viewer"], "is_active": False},
    ],
    ids=["password too short", "no roles", "unknown role", "control character", "empty", "too long", "extra"],
)
async def test_admin_api_refuses_what_the_cli_refuses(admin: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await admin.post("/v1/admin/users", json=body)
    assert response.status_code == 422, response.text


# --- API keys -------------------------------------------------------------------------------------------


async def test_api_key_is_shown_once_works_and_is_revoked(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, admin_name: str, db: asyncpg.Connection
) -> None:
    created = await admin.post("/v1/admin/api-keys", json={"name": "erp-sync", "roles": ["viewer"]})
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    key, key_id = body["key"], body["key_id"]
    assert key.startswith(f"imk_{key_id}_")
    assert body["revoked_at"] is None
    stored = await db.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id)
    assert stored is not None
    assert key.rsplit("_", 1)[1] not in str(dict(stored))

    as_key = {"X-API-Key": key}
    assert (await anonymous.get("/v1/items", headers=as_key)).status_code == 200
    listed = (await admin.get("/v1/admin/api-keys")).json()
    assert [k for k in listed if k["key_id"] == key_id] == [{k: v for k, v in body.items() if k != "key"}]
    assert key not in str(listed)

    revoked = await admin.post(f"/v1/admin/api-keys/{key_id}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert (await anonymous.get("/v1/items", headers=as_key)).status_code == 401
    assert (await admin.post(f"/v1/admin/api-keys/{key_id}/revoke")).status_code == 200  # no change
    assert (await admin.post(f"/v1/admin/api-keys/{'0' * 16}/revoke")).status_code == 404

    rows = [r for r in await trail(admin, actor=f"user:{admin_name}") if r["target"] == f"apikey:{key_id}"]
    assert [(r["action"], r["details"]) for r in reversed(rows)] == [
        ("apikey.create", {"name": "erp-sync", "roles": ["viewer"]}),
        ("apikey.revoke", {}),
    ]
    assert key.rsplit("_", 1)[1] not in str(rows)


async def test_viewer_gets_403_on_admin_routes(anonymous: httpx.AsyncClient, stack: Settings) -> None:
    name = unique("audit-viewer")
    token = await asyncio.to_thread(user_token, stack.edge_port, name, "viewer", PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    for method, path, body in [
        ("GET", "/v1/admin/users", None),
        ("POST", "/v1/admin/users", {"username": unique("x"), "password": PASSWORD, "roles": ["admin"]}),
        ("POST", f"/v1/admin/users/{name}/deactivate", None),
        ("GET", "/v1/admin/api-keys", None),
        ("POST", "/v1/admin/api-keys", {"name": "mine", "roles": ["admin"]}),
        ("GET", "/v1/admin/audit", None),
    ]:
        response = await anonymous.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert (await anonymous.request(method, path, json=body)).status_code == 401, (method, path)


# --- the other admin actions ------------------------------------------------------------------------------


async def test_subscription_and_price_decisions_are_audited(
    admin: httpx.AsyncClient, admin_name: str
) -> None:
    """Subscriptions (create, update, rotate, replay, delete) and price decisions, single and in a batch."""
    secret_url = "http://127.0.0.1:9/hooks/T000/B000/sekrit-token"
    created = await admin.post(
        "/v1/notifications/subscriptions",
        json={"name": "audit", "channel": {"kind": "webhook", "url": secret_url}},
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    target = f"subscription:{sub['id']}"
    path = f"/v1/notifications/subscriptions/{sub['id']}"
    assert (await admin.patch(path, json={"enabled": False})).status_code == 200
    rotated = await admin.post(f"{path}/rotate-secret", json={})
    assert rotated.status_code == 200, rotated.text
    assert (await admin.post(f"{path}/replay", json={"since": "2026-01-01T00:00:00Z"})).status_code == 200
    assert (await admin.delete(path)).status_code == 204

    sku, change, other = new_sku(), str(uuid.uuid4()), str(uuid.uuid4())
    approve = await admin.post(f"/v1/items/{sku}/price-changes/{change}/approve", json={"comment": "ok"})
    assert approve.status_code == 202, approve.text
    reject = await admin.post(f"/v1/items/{sku}/price-changes/{other}/reject")
    assert reject.status_code == 202, reject.text
    batch = await admin.post(
        "/v1/commands/price:batch",
        json=[
            {"type": "approve_price_change", "sku": sku, "change_id": other},
            {"type": "set_price", "sku": sku, "currency": "EUR", "selling_price": "9.90"},
        ],
    )
    assert batch.status_code == 202, batch.text
    # An Idempotency-Key replay answers the first request again; it is not a second decision.
    key = {"Idempotency-Key": uuid.uuid4().hex}
    for _ in range(2):
        again = await admin.post(f"/v1/items/{sku}/price-changes/{other}/reject", headers=key)
        assert again.status_code == 202, again.text

    rows = list(reversed(await trail(admin, actor=f"user:{admin_name}")))
    ours = [r for r in rows if r["target"] in (target, f"price_change:{change}", f"price_change:{other}")]
    assert [(r["action"], r["target"]) for r in ours] == [
        ("subscription.create", target),
        ("subscription.update", target),
        ("subscription.rotate_secret", target),
        ("subscription.replay", target),
        ("subscription.delete", target),
        ("price_change.approve", f"price_change:{change}"),
        ("price_change.reject", f"price_change:{other}"),
        ("price_change.approve", f"price_change:{other}"),
        ("price_change.reject", f"price_change:{other}"),
    ]
    assert ours[0]["details"]["url"] == "http://127.0.0.1:9"  # the path may be a token: only the origin
    assert ours[1]["details"] == {"changes": {"enabled": False}}
    assert ours[5]["details"]["command_id"] == approve.json()["command_id"]
    assert ours[5]["details"]["comment"] == "ok"
    assert ours[5]["details"]["sku"] == sku
    assert ours[7]["details"]["command_id"] == batch.json()["command_ids"][0]["command_id"]
    text = str(ours)
    assert "sekrit" not in text
    assert rotated.json()["secret"] not in text


def cli(*args: str, stdin: str | None = None) -> str:
    """`invmon ...` in-process; blocking (it runs its own event loop): call it through a thread."""
    result = CliRunner().invoke(cli_app, list(args), input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


async def test_cli_actions_are_audited_as_local(admin: httpx.AsyncClient) -> None:
    name = unique("cli-user")
    for password in (PASSWORD, PASSWORD + "-again"):  # create, then reset
        await asyncio.to_thread(
            cli, "user", "add", name, "--role", "viewer", "--password-stdin", stdin=password + "\n"
        )
    created = await asyncio.to_thread(cli, "apikey", "create", "--name", name, "--role", "viewer")
    key = created.strip().splitlines()[-1]
    key_id = key.split("_")[1]
    await asyncio.to_thread(cli, "apikey", "revoke", key_id)

    user_rows = list(reversed(await trail(admin, action="user.create"))) + list(
        reversed(await trail(admin, action="user.update"))
    )
    user_rows = [r for r in user_rows if r["target"] == f"user:{name}"]
    assert [r["action"] for r in user_rows] == ["user.create", "user.update"]
    key_rows = [r for r in await trail(admin, since=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())]
    key_rows = [r for r in reversed(key_rows) if r["target"] == f"apikey:{key_id}"]
    assert [r["action"] for r in key_rows] == ["apikey.create", "apikey.revoke"]
    for row in user_rows + key_rows:
        assert row["actor"].startswith("cli:"), row
        assert len(row["actor"]) > len("cli:"), row
        assert row["client"] == "local", row
    assert key.rsplit("_", 1)[1] not in str(key_rows)


# --- the trail itself -------------------------------------------------------------------------------------


async def test_audit_trail_is_append_only(db: asyncpg.Connection, admin: httpx.AsyncClient) -> None:
    assert (
        await admin.post("/v1/admin/api-keys", json={"name": "trail", "roles": ["viewer"]})
    ).status_code == 201
    before = [tuple(row) for row in await db.fetch("SELECT * FROM admin_audit ORDER BY id")]
    assert before
    for statement in (
        "UPDATE admin_audit SET actor = 'user:someone-else'",
        "DELETE FROM admin_audit",
        "TRUNCATE admin_audit",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute(statement)
    assert [tuple(row) for row in await db.fetch("SELECT * FROM admin_audit ORDER BY id")] == before


async def test_audit_pages_newest_first_with_filters(admin: httpx.AsyncClient, admin_name: str) -> None:
    start = datetime.now(UTC)
    ids = []
    for n in range(5):
        response = await admin.post("/v1/admin/api-keys", json={"name": f"page-{n}", "roles": ["viewer"]})
        ids.append(f"apikey:{response.json()['key_id']}")
    actor = f"user:{admin_name}"
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {
            "actor": actor,
            "action": "apikey.create",
            "since": start.isoformat(),
            "limit": 2,
        }
        if cursor:
            params["cursor"] = cursor
        page = (await admin.get("/v1/admin/audit", params=params)).json()
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [row["target"] for row in seen] == list(reversed(ids))  # newest first, each once
    keys = [(row["at"], row["id"]) for row in seen]
    assert keys == sorted(keys, reverse=True)
    until = (await admin.get("/v1/admin/audit", params={"actor": actor, "until": start.isoformat()})).json()
    assert all(row["target"] not in ids for row in until["items"])
    for bad in (
        {"cursor": "not-a-cursor"},
        {"cursor": base64.urlsafe_b64encode(b"9999-12-31T23:59:59-23:59|1").decode()},  # past PostgreSQL's
        {"since": "2026-01-01T00:00:00"},  # no time zone
        {"until": "0001-01-01T00:00:00+23:59"},  # before year 1 in UTC
        {"limit": 0},
        {"actor": "a\x00b"},
    ):
        response = await admin.get("/v1/admin/audit", params=bad)
        assert response.status_code == 422, (bad, response.text)
