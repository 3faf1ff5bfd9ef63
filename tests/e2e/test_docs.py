"""The edge serves both API documents: OpenAPI for HTTP, AsyncAPI for the Kafka contracts."""

from __future__ import annotations

import typing

import httpx
import pytest

from contracts.price_commands import PriceCommand
from contracts.stock_commands import StockCommand
from contracts.topics import ALL_TOPICS

pytestmark = pytest.mark.stack


def members(union: object) -> list[str]:
    return [m.__name__ for m in typing.get_args(typing.get_args(union)[0])]


async def test_asyncapi_documents_every_topic_and_command(edge: httpx.AsyncClient) -> None:
    response = await edge.get("/asyncapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["asyncapi"].startswith("3.")
    assert set(doc["channels"]) == {t.name for t in ALL_TOPICS}
    schemas = doc["components"]["schemas"]
    for name in members(StockCommand) + members(PriceCommand):
        assert name in schemas, name
        assert schemas[name].get("examples"), f"{name} has no example"


async def test_openapi_docs_page(edge: httpx.AsyncClient) -> None:
    assert (await edge.get("/docs")).status_code == 200
    spec = (await edge.get("/openapi.json")).json()
    assert "/v1/items/{sku}/prices" in spec["paths"]
