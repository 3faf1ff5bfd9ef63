"""Route x role matrix, generated: every operation of the edge's OpenAPI document, called as each kind of
caller (anonymous, each role, a signed token without roles), answers as the role its route declares says.

The expected role is read from the route itself: the `require(role)` dependency it (or its router)
declares, found by walking FastAPI's dependency tree. No table to keep in step: a new route is covered
the moment it exists, and one that declares no role must be in PUBLIC, a deliberate list.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import fastapi.routing
import httpx
import jwt
import pytest
from fastapi.dependencies.models import Dependant

from api_edge.app import create_app
from infra.credentials import ROLES
from infra.settings import Settings
from tests.e2e.support import user_token
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

PASSWORD = "role-matrix-password-0123"
ANONYMOUS = "anonymous"
NO_ROLES = "no roles"  # a correctly signed token of a real user that carries an empty role list
PROBLEM_JSON = "application/problem+json"

# Routes anyone may call: adding one is a security decision, so it is listed, not derived.
PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/auth/token"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/asyncapi.json"),
    }
)

# Path parameters: valid in shape and naming nothing that exists, so an allowed caller changes nothing.
PATH_VALUES: dict[str, str] = {
    "sku": f"MATRIX-{uuid.uuid4().hex[:8].upper()}",
    "change_id": str(uuid.uuid4()),
    "command_id": str(uuid.uuid4()),
    "currency": "EUR",
    "reservation_id": "r-1",
    "subscription_id": str(uuid.uuid4()),
    "delivery_id": "9223372036854775000",
    "username": f"matrix-nobody-{uuid.uuid4().hex[:8]}",
    "key_id": "0" * 16,
    "code": f"MATRIX-{uuid.uuid4().hex[:8].upper()}",
    "location": "MATRIX-NOWHERE",
}
_REQUIRE = re.compile(r"require_(\w+)")


def declared_roles(dependant: Dependant) -> set[str]:
    """The roles of every `require(role)` in a route's dependency tree (router-level ones included)."""
    found: set[str] = set()
    for dependency in dependant.dependencies:
        match = _REQUIRE.fullmatch(getattr(dependency.call, "__name__", ""))
        if match:
            found.add(match[1])
        found |= declared_roles(dependency)
    return found


def route_roles(settings: Settings) -> dict[tuple[str, str], set[str]]:
    """(method, path) -> the roles the route requires, from the edge's own FastAPI application: each
    route as the OpenAPI generator sees it, with its routers' dependencies merged in."""
    app = create_app(settings)
    # FastAPI >= 0.16x keeps included routers as branches; its OpenAPI generator walks them with this.
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    roles: dict[tuple[str, str], set[str]] = {}
    routes: list[Any] = list(iterate(app.routes) if iterate else app.routes)
    for route in routes:
        dependant = getattr(route, "dependant", None)
        if isinstance(dependant, Dependant):
            for method in route.methods or ():
                roles[(method, route.path_format)] = declared_roles(dependant)
    return roles


def allowed(caller: str, needs: set[str]) -> bool:
    """admin may do everything; every role may read (viewer); anonymous and no roles may do nothing."""
    if caller in (ANONYMOUS, NO_ROLES):
        return False
    return all(caller == "admin" or caller == role or role == "viewer" for role in needs)


def fill_path(path: str) -> str:
    def value(match: re.Match[str]) -> str:
        assert match[1] in PATH_VALUES, f"no matrix value for path parameter {match[1]!r} of {path}: add one"
        return PATH_VALUES[match[1]]

    return re.sub(r"\{([^}]+)\}", value, path)


def minimal_body(doc: dict[str, Any], operation: dict[str, Any]) -> Any:
    """An empty JSON object or array of the request body's type: enough to reach authorisation."""
    body = operation.get("requestBody")
    if body is None or "application/json" not in body["content"]:
        return None
    schema = body["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return [] if schema.get("type") == "array" else {}


@pytest.fixture(scope="module")
def tokens(pipeline: dict[str, Process], stack: Settings) -> dict[str, str | None]:
    """A login per role (users made with `invmon user add`), none for anonymous, and a signed token
    without roles."""
    run = uuid.uuid4().hex[:6]
    found: dict[str, str | None] = {ANONYMOUS: None}
    for role in ROLES:
        found[role] = user_token(stack.edge_port, f"matrix-{role}-{run}", role, PASSWORD)
    now = int(time.time())
    claims = {
        "sub": f"user:matrix-viewer-{run}",
        "roles": [],
        "iss": stack.jwt_issuer,
        "aud": stack.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    found[NO_ROLES] = jwt.encode(claims, stack.jwt_key(), algorithm="HS256")
    return found


@pytest.fixture
async def client(pipeline: dict[str, Process], stack: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.edge_port}", timeout=10.0) as anonymous:
        yield anonymous


def test_roles_are_derived_from_the_routes(stack: Settings) -> None:
    """The derivation sees every role and the router-level requirements, so the matrix cannot pass
    vacuously (a route read as public would fail the PUBLIC check below)."""
    roles = route_roles(stack)
    assert {role for needs in roles.values() for role in needs} == set(ROLES)
    assert roles[("GET", "/v1/admin/audit")] == {"admin"}  # declared on the router
    assert roles[("POST", "/v1/items/{sku}/prices")] == {"pricing"}  # declared by CommandRouter
    assert roles[("GET", "/v1/items")] == {"viewer"}  # declared on the endpoint
    assert roles[("GET", "/v1/exports/ledger")] == {"viewer"}  # streamed responses are covered too
    assert roles[("GET", "/v1/exports/price-history")] == {"viewer"}
    assert roles[("POST", "/v1/auth/token")] == set()
    assert roles[("GET", "/v1/locations")] == {"viewer"}  # declared on the router
    assert roles[("POST", "/v1/locations")] == {"viewer", "admin"}  # and on the endpoint: admin
    assert roles[("PATCH", "/v1/locations/{code}")] == {"viewer", "admin"}


async def test_every_operation_answers_each_caller_as_its_route_declares(
    client: httpx.AsyncClient, tokens: dict[str, str | None], stack: Settings
) -> None:
    doc = (await client.get("/openapi.json")).json()
    roles = route_roles(stack)
    failures: list[str] = []
    checked = 0
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            method = method.upper()
            if (method, path) not in roles:
                failures.append(f"{method} {path}: in the served document but not a route of create_app()")
                continue
            needs = roles[(method, path)]
            if not needs:
                if (method, path) not in PUBLIC:
                    failures.append(f"{method} {path}: declares no role and is not in PUBLIC")
                elif operation.get("security"):
                    failures.append(f"{method} {path}: public route declares security")
            elif not operation.get("security"):
                failures.append(f"{method} {path}: protected route declares no security scheme")
            url, body = fill_path(path), minimal_body(doc, operation)
            for caller, token in tokens.items():
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = await client.request(method, url, json=body, headers=headers)
                checked += 1
                failures += verdict(method, path, caller, needs, response)
    assert checked >= len(tokens) * len(PUBLIC), "the document lists too few operations"
    assert failures == [], "\n".join(failures)


def verdict(method: str, path: str, caller: str, needs: set[str], response: httpx.Response) -> list[str]:
    where = f"{method} {path} as {caller} (needs {', '.join(sorted(needs)) or 'nothing'})"
    status = response.status_code
    if status >= 500:
        return [f"{where}: {status} {response.text[:200]}"]
    if not needs or allowed(caller, needs):
        return [f"{where}: {status} {response.text[:200]}"] if status in (401, 403) else []
    expected = 401 if caller == ANONYMOUS else 403
    if status != expected or response.headers.get("content-type") != PROBLEM_JSON:
        return [f"{where}: {status} (expected {expected} problem+json) {response.text[:200]}"]
    if expected == 401 and response.headers.get("www-authenticate") != "Bearer":
        return [f"{where}: 401 without WWW-Authenticate: Bearer"]
    return []
