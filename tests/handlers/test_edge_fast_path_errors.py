"""The edge as uvicorn serves it (`create_edge`), in process against the real stack: an unexpected error on
the command fast path, which runs outside FastAPI, still gets the one problem shape, counted as a 500."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client import REGISTRY

from api_edge import fast_intake
from api_edge.app import create_edge
from api_edge.bodies import BodyGuard
from api_edge.fast_intake import FastIntake
from api_edge.health import RequestMetrics
from infra.settings import Settings
from tests.e2e.live_support import token

pytestmark = pytest.mark.stack


async def test_an_unexpected_error_on_the_fast_path_is_a_problem_500(
    stack: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    edge = create_edge(stack)
    assert isinstance(edge, RequestMetrics)
    assert isinstance(edge.app, BodyGuard)
    assert isinstance(edge.app.app, FastIntake)
    app = edge.app.app.app

    async def broken(*_: object) -> None:
        raise RuntimeError("the broker client broke in a way nobody expected")

    monkeypatch.setattr(fast_intake, "publish_command", broken)
    route = {"route": "/v1/items/{sku}/receipts", "status": "500"}
    before = REGISTRY.get_sample_value("invmon_edge_requests_total", route) or 0.0
    operator = token(stack, subject="user:fast-path", roles=["operator"])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=edge, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            answer = await client.post(
                f"/v1/items/FP-{uuid.uuid4().hex[:8].upper()}/receipts",
                json={"quantity": 1},
                headers={"Authorization": f"Bearer {operator}"},
            )
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["title"] == "Internal Server Error"
    assert "nobody expected" not in answer.text
    assert REGISTRY.get_sample_value("invmon_edge_requests_total", route) == before + 1
