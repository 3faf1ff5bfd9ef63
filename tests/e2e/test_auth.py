"""Authentication and authorization of the HTTP edge, end to end against the real edge process.

Every route of the OpenAPI document needs credentials and its role (the matrix: test_role_matrix.py);
JWTs are checked strictly (pinned algorithm, signature, exp, iat, iss, aud, size); API keys are shown once,
stored as a SHA-256 digest and can be revoked; commands record their authenticated caller as the actor.
The WebSocket relay's own authentication is tested in test_live_relay.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from typer.testing import CliRunner

from infra.credentials import ROLES, Role
from infra.settings import Settings
from invmon.cli import app as cli_app
from tests.e2e.support import new_sku, wait_for_status
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

PASSWORD = "auth-e2e-password-0123"
NO_ROLES = "no-roles"  # a correctly signed token that carries an empty role list
PROBLEM_JSON = "application/problem+json"

# One SKU per run, so a second run against the same database walks fresh state.
SKU = f"AUTH-{uuid.uuid4().hex[:8].upper()}"


# --- helpers -------------------------------------------------------------------------------------------


def cli(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli_app, list(args), input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def add_user(name: str, *roles: str) -> None:
    role_args = [arg for role in roles for arg in ("--role", role)]
    cli("user", "add", name, *role_args, "--password-stdin", stdin=PASSWORD + "\n")


def create_api_key(name: str, role: Role) -> tuple[str, str, str]:
    """(key, key_id, secret) from the one time `invmon apikey create` shows the key: its last line."""
    output = cli("apikey", "create", "--name", name, "--role", role)
    key = output.strip().splitlines()[-1]
    match = re.fullmatch(r"imk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})", key)
    assert match, output
    assert output.count(match[2]) == 1, output  # the secret appears once, in the key line
    return key, match[1], match[2]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unb64(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


DROP = object()


def claims(settings: Settings, **changes: object) -> dict[str, Any]:
    """The claims the edge itself issues (valid for 5 minutes), with changes; DROP removes a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user:auth-crafted",
        "roles": ["viewer"],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not DROP}


def sign(
    settings: Settings, payload: dict[str, Any], key: str | None = None, algorithm: str = "HS256"
) -> str:
    return jwt.encode(payload, key or settings.jwt_key(), algorithm=algorithm)


def sized_token(settings: Settings, low: int, high: int) -> str:
    """A correctly signed, otherwise valid token whose length lies in [low, high]."""
    for n in range(8000):
        token = sign(settings, claims(settings, pad="x" * n))
        if low <= len(token) <= high:
            return token
    raise AssertionError(f"no token length in [{low}, {high}]")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.text}"
    )
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    assert response.json()["status"] == status


def assert_unauthenticated(response: httpx.Response) -> None:
    assert_problem(response, 401)
    assert response.headers.get("www-authenticate") == "Bearer", response.headers


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_url(stack: Settings) -> str:
    return f"http://127.0.0.1:{stack.edge_port}"


@pytest.fixture(scope="module")
def tokens(pipeline: dict[str, Process], base_url: str, stack: Settings) -> dict[str, str]:
    """A login token per single-role user (made with `invmon user add`) and one signed token without roles."""
    result: dict[str, str] = {}
    for role in ROLES:
        add_user(f"auth-{role}", role)
        response = httpx.post(
            f"{base_url}/v1/auth/token", data={"username": f"auth-{role}", "password": PASSWORD}, timeout=10
        )
        assert response.status_code == 200, response.text
        result[role] = response.json()["access_token"]
    result[NO_ROLES] = sign(stack, claims(stack, roles=[]))
    return result


@pytest.fixture
async def client(base_url: str, pipeline: dict[str, Process]) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as anonymous:
        yield anonymous


# --- 1. every route: 401 without credentials, 403 under-privileged, through with the role -------------
# The route x role matrix is generated from the routes' declared roles: test_role_matrix.py.


async def test_undocumented_operational_routes_are_public(client: httpx.AsyncClient) -> None:
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert (await client.get(path)).status_code == 200, path


# --- 2. JWT negatives ----------------------------------------------------------------------------------

OTHER_SECRET = "another-secret-that-is-long-enough-0123456789"


def _alg_none(settings: Settings, _: str) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(settings, roles=['admin']))}."


def _tampered(_: Settings, token: str) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{b64({**unb64(payload), 'roles': ['admin']})}.{signature}"


def _hs512(settings: Settings) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # the real secret is sized for HS256
        return sign(settings, claims(settings), algorithm="HS512")


def _expired(settings: Settings, _: str) -> str:
    now = int(time.time())
    return sign(settings, claims(settings, iat=now - 960, nbf=now - 960, exp=now - 60))


NEGATIVE_TOKENS: dict[str, Callable[[Settings, str], str]] = {
    "alg none": _alg_none,
    "wrong key": lambda s, _: sign(s, claims(s), key=OTHER_SECRET),
    "other algorithm, right key": lambda s, _: _hs512(s),
    "expired": _expired,
    "not yet valid": lambda s, _: sign(s, claims(s, nbf=int(time.time()) + 300)),
    "wrong aud": lambda s, _: sign(s, claims(s, aud="someone-else")),
    "wrong iss": lambda s, _: sign(s, claims(s, iss="https://evil.example")),
    "tampered payload": _tampered,
    "missing exp": lambda s, _: sign(s, claims(s, exp=DROP)),
    "missing iat": lambda s, _: sign(s, claims(s, iat=DROP)),
    "missing iss": lambda s, _: sign(s, claims(s, iss=DROP)),
    "missing aud": lambda s, _: sign(s, claims(s, aud=DROP)),
    "missing sub": lambda s, _: sign(s, claims(s, sub=DROP)),
    "roles not a list": lambda s, _: sign(s, claims(s, roles="admin")),
    "oversized": lambda s, _: sized_token(s, 4097, 4200),
    "not a jwt": lambda _s, _t: "not.a.jwt",
}


@pytest.mark.parametrize("case", NEGATIVE_TOKENS)
async def test_bad_tokens_are_401(
    case: str, client: httpx.AsyncClient, tokens: dict[str, str], stack: Settings
) -> None:
    token = NEGATIVE_TOKENS[case](stack, tokens["viewer"])
    assert_unauthenticated(await client.get(f"/v1/items/{SKU}", headers=bearer(token)))


@pytest.mark.parametrize(
    "token_of",
    [
        pytest.param(lambda s: sign(s, claims(s)), id="crafted with the real secret"),
        pytest.param(lambda s: sized_token(s, 4080, 4096), id="at the size limit"),
    ],
)
async def test_valid_crafted_tokens_pass(
    token_of: Callable[[Settings], str], client: httpx.AsyncClient, stack: Settings
) -> None:
    """The negative cases differ from these only in the one broken property, so they fail for it."""
    response = await client.get(f"/v1/commands/{uuid.uuid4()}", headers=bearer(token_of(stack)))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "unknown"


# --- 3. API keys -------------------------------------------------------------------------------------


async def test_api_key_shown_once_stored_hashed_and_revocable(
    client: httpx.AsyncClient, db: asyncpg.Connection, pipeline: dict[str, Process]
) -> None:
    key, key_id, secret = await asyncio.to_thread(create_api_key, "t", "viewer")
    read = f"/v1/commands/{uuid.uuid4()}"

    for headers in ({"X-API-Key": key}, bearer(key)):
        response = await client.get(read, headers=headers)
        assert response.status_code == 200, response.text
        assert_problem(
            await client.post(f"/v1/items/{SKU}/receipts", json={"quantity": 1}, headers=headers), 403
        )
    assert_unauthenticated(await client.get(read, headers={"X-API-Key": f"imk_{key_id}_{secret[::-1]}"}))
    assert_unauthenticated(await client.get(read, headers={"X-API-Key": "imk_malformed"}))

    row = await db.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id)
    assert row is not None
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert list(row["roles"]) == ["viewer"]
    assert row["revoked_at"] is None
    stored = " ".join(str(value) for value in row.values())
    assert secret not in stored
    assert key not in stored

    await asyncio.to_thread(cli, "apikey", "revoke", key_id)
    assert (await db.fetchval("SELECT revoked_at FROM api_keys WHERE key_id = $1", key_id)) is not None
    for headers in ({"X-API-Key": key}, bearer(key)):
        assert_unauthenticated(await client.get(read, headers=headers))


# --- 4. login ------------------------------------------------------------------------------------------


async def test_login_rejects_wrong_credentials_and_issues_checked_claims(
    client: httpx.AsyncClient, tokens: dict[str, str], stack: Settings
) -> None:
    wrong = await client.post(
        "/v1/auth/token", data={"username": "auth-operator", "password": PASSWORD + "x"}
    )
    assert_unauthenticated(wrong)
    unknown = await client.post("/v1/auth/token", data={"username": "auth-nobody", "password": PASSWORD})
    assert_unauthenticated(unknown)
    assert wrong.json()["detail"] == unknown.json()["detail"]  # no hint whether the user exists
    for impossible in ("auth-\x00operator", "x" * 101, "auth\x1b[2J"):  # PostgreSQL cannot hold NUL
        answer = await client.post("/v1/auth/token", data={"username": impossible, "password": PASSWORD})
        assert_unauthenticated(answer)
        assert answer.json()["detail"] == unknown.json()["detail"]

    response = await client.post("/v1/auth/token", data={"username": "auth-operator", "password": PASSWORD})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["token_type"], answer["expires_in"]) == ("bearer", stack.jwt_ttl_s)
    token = answer["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = jwt.decode(
        token,
        stack.jwt_key(),
        algorithms=["HS256"],
        audience=stack.jwt_audience,
        issuer=stack.jwt_issuer,
    )
    assert decoded["iss"] == stack.jwt_issuer
    assert decoded["aud"] == stack.jwt_audience
    assert decoded["exp"] - decoded["iat"] == stack.jwt_ttl_s
    assert abs(decoded["iat"] - time.time()) < 60
    assert decoded["sub"] == "user:auth-operator"
    assert decoded["roles"] == ["operator"]


# --- 6. the actor of a command is its authenticated caller ---------------------------------------------


async def test_command_actor_is_the_authenticated_caller(
    client: httpx.AsyncClient, edge: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await asyncio.to_thread(add_user, "op-x", "operator")
    login = await client.post("/v1/auth/token", data={"username": "op-x", "password": PASSWORD})
    assert login.status_code == 200, login.text
    as_user = bearer(login.json()["access_token"])
    key, key_id, _ = await asyncio.to_thread(create_api_key, "actor-test", "operator")
    sku = new_sku()

    async def applied(response: httpx.Response) -> str:
        assert response.status_code == 202, response.text
        command_id: str = response.json()["command_id"]
        status = await wait_for_status(edge, command_id)
        assert status["status"] == "applied", status
        return command_id

    await applied(await client.post("/v1/items", json={"sku": sku, "name": "Actor lamp"}, headers=as_user))
    by_user = await applied(
        await client.post(f"/v1/items/{sku}/receipts", json={"quantity": 4}, headers=as_user)
    )
    by_key = await applied(
        await client.post(f"/v1/items/{sku}/receipts", json={"quantity": 2}, headers={"X-API-Key": key})
    )
    # The caller cannot name another actor: the field is not part of the request.
    spoof = await client.post(
        f"/v1/items/{sku}/receipts", json={"quantity": 1, "actor": "user:someone-else"}, headers=as_user
    )
    assert_problem(spoof, 422)
    # Nor in a batch, where commands carry their fields inline: the edge's actor wins.
    batch = await client.post(
        "/v1/commands/stock:batch",
        json=[{"type": "receive_stock", "sku": sku, "quantity": 1, "actor": "user:someone-else"}],
        headers=as_user,
    )
    assert batch.status_code == 202, batch.text
    (accepted,) = batch.json()["command_ids"]
    by_batch = accepted["command_id"]
    assert (await wait_for_status(edge, by_batch))["status"] == "applied"

    rows = await db.fetch("SELECT command_id, actor FROM stock_ledger WHERE sku = $1", sku)
    actors = {str(row["command_id"]): row["actor"] for row in rows}
    assert actors == {by_user: "user:op-x", by_key: f"key:{key_id}", by_batch: "user:op-x"}
    ledger = (await edge.get(f"/v1/items/{sku}/ledger")).json()["entries"]
    assert [entry["actor"] for entry in ledger] == ["user:op-x", f"key:{key_id}", "user:op-x"]


# --- 6. refresh ------------------------------------------------------------------------------------------


async def test_refresh_renews_a_session_with_the_users_current_roles(
    client: httpx.AsyncClient, stack: Settings, db: asyncpg.Connection
) -> None:
    # The CLI runs its own event loop: give it a thread of its own.
    await asyncio.to_thread(add_user, "auth-refresh", "viewer")
    login = await client.post("/v1/auth/token", data={"username": "auth-refresh", "password": PASSWORD})
    first = login.json()["access_token"]

    def decode(token: str) -> dict[str, Any]:
        secret = stack.jwt_key()
        options = {"audience": stack.jwt_audience, "issuer": stack.jwt_issuer}
        return dict(jwt.decode(token, secret, algorithms=["HS256"], **options))

    renewed = await client.post("/v1/auth/refresh", headers=bearer(first))
    assert renewed.status_code == 200, renewed.text
    second = renewed.json()["access_token"]
    assert decode(second)["sub"] == "user:auth-refresh"
    assert decode(second)["roles"] == ["viewer"]
    assert decode(second)["exp"] >= decode(first)["exp"]

    await asyncio.to_thread(add_user, "auth-refresh", "pricing")  # roles changed since the token was issued
    assert decode((await client.post("/v1/auth/refresh", headers=bearer(second))).json()["access_token"])[
        "roles"
    ] == ["pricing"]

    await db.execute("UPDATE users SET is_active = false WHERE username = 'auth-refresh'")
    assert_unauthenticated(await client.post("/v1/auth/refresh", headers=bearer(second)))
    assert_unauthenticated(await client.post("/v1/auth/refresh"))
    key, _, _ = await asyncio.to_thread(create_api_key, "auth-refresh-key", "viewer")
    assert_problem(await client.post("/v1/auth/refresh", headers={"X-API-Key": key}), 403)
