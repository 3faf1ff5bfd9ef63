"""Schemathesis against the live edge over HTTP: every operation of its OpenAPI document, called by an
authenticated admin with generated (valid) requests. Checks: no server error, status codes, content types
and response bodies as documented (problem+json included). The batch routes document their items as any
object; their JSON bodies are drawn as arrays of nested, command-like JSON instead, so the per-item
validation (and what it does with deep or odd values) is what gets exercised.

The default suite runs a few examples per operation (well under a minute); `--run-slow` runs many more."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as examples
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api_edge.app import create_app
from contracts.price_commands import PRICE_COMMAND_ADAPTER
from contracts.stock_commands import STOCK_COMMAND_ADAPTER
from infra.settings import Settings, get_settings
from tests.e2e.support import user_token
from tests.integration.helpers import pg_dsn
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

USER = "schemathesis-admin"  # its own principal, so its requests do not spend the other tests' quota
PASSWORD = "schemathesis-admin-password-0123"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FEW, MANY = 3, 40  # examples per operation: default suite, --run-slow
MAX_WAIT_S = 0.2


@pytest.fixture(scope="module")
def token(pipeline: dict[str, Process], stack: Settings, own_subscriptions: None) -> str:
    return user_token(stack.edge_port, USER, "admin", PASSWORD)


@pytest.fixture(scope="module")
def own_subscriptions(stack: Settings) -> Iterator[None]:
    """The fuzzer creates notification subscriptions (many match every event): remove them afterwards,
    with their deliveries, so later tests see only subscriptions of their own."""

    async def ids() -> set[uuid.UUID]:
        conn = await asyncpg.connect(pg_dsn(stack))
        try:
            return {row["id"] for row in await conn.fetch("SELECT id FROM notification_subscriptions")}
        finally:
            await conn.close()

    async def delete(created: set[uuid.UUID]) -> None:
        conn = await asyncpg.connect(pg_dsn(stack))
        try:
            await conn.execute("DELETE FROM notification_subscriptions WHERE id = ANY($1::uuid[])", created)
        finally:
            await conn.close()

    before = asyncio.run(ids())
    yield
    asyncio.run(delete(asyncio.run(ids()) - before))


# The document the edge serves at /openapi.json, built from the same code without starting it (pytest 9
# broke schemathesis' lazy fixture loader, which would fetch it from the live edge).
schema = schemathesis.openapi.from_dict(create_app(get_settings()).openapi())


def _command_types_and_fields() -> tuple[list[str], list[str]]:
    types: list[str] = []
    fields: set[str] = set()
    for adapter in (STOCK_COMMAND_ADAPTER, PRICE_COMMAND_ADAPTER):
        for model in adapter.json_schema()["$defs"].values():
            properties = model.get("properties", {})
            if "type" in properties:
                types.append(properties["type"]["const"])
                fields |= set(properties) - {"type"}
    return types, sorted(fields)


TYPES, FIELDS = _command_types_and_fields()
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["ABC-1", "12.90", "EUR", "2026-11-27T09:30:00Z", "9999-12-31T23:59:59-23:59"])
    | st.sampled_from(["\ud800", "a\r\nb", "1e3", "1_000", "\u0661\u0662", " 12 "])
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)
# An item: a command's type and SKU, some of the commands' field names with any JSON (nested) as values,
# or any JSON at all.
COMMAND_LIKE = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES), "sku": st.sampled_from(["ABC-1", "abc-2", "", "A" * 70]) | SCALARS},
    optional={name: ANY_JSON for name in FIELDS if name != "sku"},
)
NESTED_ITEMS = st.lists(COMMAND_LIKE | ANY_JSON, max_size=4)


@schema.hook("before_generate_case")
def nested_batch_items(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def with_nested_items(case: Any) -> st.SearchStrategy[Any]:
        if not case.path.endswith(":batch"):
            return st.just(case)
        return NESTED_ITEMS.map(lambda items: _with_body(case, items))

    return strategy.flatmap(with_nested_items)


def _with_body(case: Any, body: list[Any]) -> Any:
    case.body = body
    return case


def ndjson_lines(value: Any) -> bytes:
    """The batch routes also take one command per line; a drawn list is sent as its lines."""
    lines = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(line) for line in lines).encode()


schemathesis.serializer("application/x-ndjson")(lambda _context, value: ndjson_lines(value))


def _seconds(value: object) -> float:
    """The wait a generated (possibly invalid) `wait` value asks for; 0 when it is not a number."""
    try:
        return float(value) if isinstance(value, int | float | str) else 0.0
    except ValueError:
        return 0.0


def call(case: Any, token: str, stack: Settings) -> None:
    if case.query and _seconds(case.query.get("wait")) > MAX_WAIT_S:
        case.query["wait"] = MAX_WAIT_S  # ?wait= holds the answer up to 30 s: keep the run short
    case.call_and_validate(
        base_url=f"http://127.0.0.1:{stack.edge_port}",
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
        timeout=30,
    )


@schema.parametrize()
@examples(max_examples=FEW, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_edge_answers_as_documented(case: Any, token: str, stack: Settings) -> None:
    call(case, token, stack)


@pytest.mark.slow
@schema.parametrize()
@examples(max_examples=MANY, deadline=None, suppress_health_check=list(HealthCheck))
def test_edge_answers_as_documented_many_examples(case: Any, token: str, stack: Settings) -> None:
    call(case, token, stack)
