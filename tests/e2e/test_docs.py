"""The edge serves both API documents: OpenAPI for HTTP, AsyncAPI for the Kafka contracts."""

from __future__ import annotations

import typing
from html.parser import HTMLParser
from urllib.parse import urlsplit

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


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


async def test_the_docs_page_works_offline(edge: httpx.AsyncClient) -> None:
    """Swagger UI comes from a package: the page names only same-origin URLs, each of them answers, and
    the CSP lets the browser load nothing from elsewhere."""
    page = await edge.get("/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self';" in csp
    links = _Links()
    links.feed(page.text)
    assert {urlsplit(u).path.rsplit("/", 1)[-1] for u in links.urls} >= {"swagger-ui-bundle.js", "init.js"}
    for url in links.urls:
        parts = urlsplit(url)
        assert not parts.scheme, url
        assert not parts.netloc, url
        assert parts.path.startswith("/"), url
        asset = await edge.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    init = (await edge.get("/docs/init.js")).text
    assert '"/openapi.json"' in init
    assert "//" not in init.replace("// ", "").replace('"/openapi.json"', "")  # no absolute URL
    assert (await edge.get("/redoc")).status_code == 404  # FastAPI's ReDoc page loads from a CDN
