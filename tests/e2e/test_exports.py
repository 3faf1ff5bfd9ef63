"""Exports of the ledger and the price history through the real edge (and `invmon export`): viewer access,
filters, both formats read back by the csv and json modules, problem+json for bad input, and a million
rows streamed at constant edge RSS."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import pytest
from typer.testing import CliRunner

from db.exports import LEDGER, PRICE_HISTORY
from infra.settings import Settings
from invmon.cli import app
from tests.e2e.support import new_sku, user_token, wait_for_status
from tests.integration.helpers import wait_until
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

PROBLEM_JSON = "application/problem+json"
VIEWER_PASSWORD = "export-viewer-password-0123"


@pytest.fixture
async def viewer(pipeline: dict[str, Process], stack: Settings) -> AsyncIterator[httpx.AsyncClient]:
    name = f"export-viewer-{uuid.uuid4().hex[:6]}"
    token = await asyncio.to_thread(user_token, stack.edge_port, name, "viewer", VIEWER_PASSWORD)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack.edge_port}",
        timeout=30.0,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    status = await wait_for_status(edge, response.json()["command_id"])
    assert status["status"] == "applied", status


@pytest.fixture
async def stocked(edge: httpx.AsyncClient) -> tuple[str, str, str]:
    """Two items of one fresh category and one outside it, with ledger rows and a price each."""
    category = f"cat-{uuid.uuid4().hex[:8]}"
    a, b, other = new_sku(), new_sku(), new_sku()
    for sku, cat in ((a, category), (b, category), (other, "elsewhere")):
        await applied(
            edge, await edge.post("/v1/items", json={"sku": sku, "name": "Export", "category": cat})
        )
        await applied(edge, await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 5}))
        await applied(
            edge,
            await edge.post(f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "10.5"}),
        )
    await applied(edge, await edge.post(f"/v1/items/{a}/receipts", json={"quantity": 2}))
    return category, a, b


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(response.text, newline=""))
    assert (
        tuple(reader.fieldnames or ()) == LEDGER.names
        or tuple(reader.fieldnames or ()) == PRICE_HISTORY.names
    )
    return list(reader)


def ndjson_rows(response: httpx.Response) -> list[dict[str, object]]:
    return [json.loads(line) for line in response.text.splitlines()]


async def test_ledger_csv_for_a_sku_as_viewer(
    viewer: httpx.AsyncClient, stocked: tuple[str, str, str]
) -> None:
    _, a, _ = stocked
    response = await viewer.get("/v1/exports/ledger", params={"sku": a.lower()})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="ledger-')
    assert response.headers["content-disposition"].endswith('.csv"')
    rows = csv_rows(response)
    assert [(r["sku"], r["delta"], r["on_hand_after"], r["reason"]) for r in rows] == [
        (a, "5", "5", "receive_stock"),
        (a, "2", "7", "receive_stock"),
    ]
    assert all(r["created_at"].endswith("Z") and "T" in r["created_at"] for r in rows)


async def test_category_ndjson_by_accept_header_and_time_range(
    viewer: httpx.AsyncClient, stocked: tuple[str, str, str]
) -> None:
    category, a, b = stocked
    response = await viewer.get(
        "/v1/exports/ledger", params={"category": category}, headers={"Accept": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    rows = ndjson_rows(response)
    assert {str(r["sku"]) for r in rows} == {a, b}
    assert len(rows) == 3
    assert all(tuple(r) == LEDGER.names for r in rows)
    assert all(isinstance(r["delta"], int) for r in rows)
    assert [(r["created_at"], r["id"]) for r in rows] == sorted((r["created_at"], r["id"]) for r in rows)

    # `from` is inclusive, `until` exclusive: the second row's instant splits the export in two.
    split = str(rows[1]["created_at"])
    later = ndjson_rows(
        await viewer.get(
            "/v1/exports/ledger", params={"category": category, "from": split, "format": "ndjson"}
        )
    )
    earlier = ndjson_rows(
        await viewer.get(
            "/v1/exports/ledger", params={"category": category, "until": split, "format": "ndjson"}
        )
    )
    assert later + earlier == rows[1:] + rows[:1]


async def test_price_history_keeps_money_as_decimal_text(
    viewer: httpx.AsyncClient, stocked: tuple[str, str, str]
) -> None:
    category, a, b = stocked
    rows = ndjson_rows(
        await viewer.get("/v1/exports/price-history", params={"category": category, "format": "ndjson"})
    )
    assert [(r["sku"], r["currency"], r["new_price"], r["selling_price"]) for r in rows] == [
        (a, "EUR", "10.5000", "10.5000"),
        (b, "EUR", "10.5000", "10.5000"),
    ]
    assert all(tuple(r) == PRICE_HISTORY.names for r in rows)
    as_csv = csv_rows(await viewer.get("/v1/exports/price-history", params={"sku": b, "format": "csv"}))
    assert [(r["sku"], r["new_price"], r["old_price"]) for r in as_csv] == [(b, "10.5000", "")]


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [
        ({"from": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, {}, 422),
        ({"sku": "A-1", "category": "tools"}, {}, 422),
        ({"from": "2026-01-01T00:00:00"}, {}, 422),  # no timezone
        ({"format": "xml"}, {}, 422),
        ({"sku": "not a sku!"}, {}, 422),
        ({}, {"Accept": "application/xml"}, 406),
    ],
)
async def test_bad_input_is_a_problem(
    viewer: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str], status: int
) -> None:
    for kind in ("ledger", "price-history"):
        response = await viewer.get(f"/v1/exports/{kind}", params=params, headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM_JSON


async def test_anonymous_is_refused(viewer: httpx.AsyncClient) -> None:
    response = await viewer.get("/v1/exports/ledger", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_cli_writes_the_same_bytes_as_the_edge(
    viewer: httpx.AsyncClient, stocked: tuple[str, str, str], tmp_path: Path
) -> None:
    category, _, _ = stocked
    for kind, fmt in (("ledger", "csv"), ("price-history", "ndjson")):
        out = tmp_path / f"{kind}.{fmt}"
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["export", kind, "--category", category, "--format", fmt, "--output", str(out)],
        )
        assert result.exit_code == 0, result.output
        served = await viewer.get(f"/v1/exports/{kind}", params={"category": category, "format": fmt})
        assert out.read_bytes() == served.content
        assert served.content.count(b"\n") >= 2


async def insert_ledger_rows(db: asyncpg.Connection, sku: str, count: int) -> None:
    """`count` ledger rows of `sku`, one a second up to now, made by PostgreSQL itself (seconds for 1M)."""
    await db.execute(
        """
        INSERT INTO stock_ledger (command_id, sku, delta, reserved_delta, reason, actor, on_hand_after,
                                  reserved_after, created_at)
        SELECT gen_random_uuid(), $1, 1, 0, 'receive_stock', 'user:export-test', n, 0,
               now() - interval '1 second' * ($2 - n)
        FROM generate_series(1, $2) AS n
        """,
        sku,
        count,
    )


async def test_exports_per_edge_are_bounded_and_an_abandoned_one_frees_its_slot(
    viewer: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """Each export holds a pooled connection while it streams: a third concurrent one gets 503 instead of
    starving the edge's reads, and clients that go away mid-stream give their slots back."""
    sku = new_sku()
    await insert_ledger_rows(db, sku, 300_000)  # ~30 MB of CSV: more than the sockets buffer
    url, params = "/v1/exports/ledger", {"sku": sku}
    try:
        async with (
            viewer.stream("GET", url, params=params) as first,
            viewer.stream("GET", url, params=params) as second,
        ):
            assert (first.status_code, second.status_code) == (200, 200)
            busy = await viewer.get(url, params=params)
            assert busy.status_code == 503, busy.text[:200]
            assert busy.headers["content-type"] == PROBLEM_JSON
            assert busy.headers["retry-after"] == "10"
        # Both left unread and closed: once the edge notices the disconnects, two can run at once again.

        async def two_at_once() -> tuple[int, int]:
            async with (
                viewer.stream("GET", url, params=params) as a,
                viewer.stream("GET", url, params=params) as b,
            ):
                return a.status_code, b.status_code

        await wait_until(two_at_once, lambda codes: codes == (200, 200), within=15, what="free export slots")
        # The abandoned reads left no connection of the edge's pool in a failed transaction: every pooled
        # connection (5 + 5 overflow) serves a whole export again.
        for _ in range(12):
            whole = await viewer.get(url, params={"sku": sku, "until": "2000-01-01T00:00:00Z"})
            assert whole.status_code == 200, whole.text[:300]
            assert whole.text.count("\n") == 1  # the header alone
    finally:
        await db.execute("DELETE FROM stock_ledger WHERE sku = $1", sku)


EXPORT_ROWS = 1_000_000
RSS_GROWTH_LIMIT = 20 * 1024 * 1024


async def test_a_million_rows_stream_at_constant_rss(
    viewer: httpx.AsyncClient, pipeline: dict[str, Process], db: asyncpg.Connection
) -> None:
    """The edge's RSS while it streams 1,000,000 ledger rows stays within 20 MB of its RSS before the
    request (a buffered export would grow by the whole file and more, hundreds of MB)."""
    sku = new_sku()
    await insert_ledger_rows(db, sku, EXPORT_ROWS)
    edge = psutil.Process(pipeline["edge"].popen.pid)
    baseline = edge.memory_info().rss
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        # A thread, so the edge's peak is seen even while the client is busy parsing.
        while not done.wait(0.05):
            samples.append(edge.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    rows = 0
    started = time.monotonic()
    sampler.start()
    try:
        async with viewer.stream(
            "GET", "/v1/exports/ledger", params={"sku": sku, "format": "csv"}
        ) as response:
            assert response.status_code == 200
            async for _line in response.aiter_lines():
                rows += 1
    finally:
        done.set()
        sampler.join()
        await db.execute("DELETE FROM stock_ledger WHERE sku = $1", sku)
    elapsed = time.monotonic() - started
    assert rows == EXPORT_ROWS + 1  # and the header
    growth = max(samples) - baseline
    mib = [round(s / 2**20, 1) for s in samples[:: max(1, len(samples) // 20)]]
    print(
        f"\nexport of {EXPORT_ROWS} rows in {elapsed:.1f}s; edge RSS before {baseline / 2**20:.1f} MiB, "
        f"during (MiB, 20 samples): {mib}; peak growth {growth / 2**20:.1f} MiB"
    )
    assert growth < RSS_GROWTH_LIMIT, mib


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "2026-01-01T00:00:00"],  # no timezone
        ["--sku", "A-1", "--category", "tools"],
        ["--from", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"],
        ["--format", "xml"],
        ["--sku", "not a sku!"],
    ],
)
def test_cli_refuses_bad_input_before_writing(args: list[str], tmp_path: Path) -> None:
    out = tmp_path / "export.csv"
    result = CliRunner().invoke(app, ["export", "ledger", *args, "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert not out.exists()
