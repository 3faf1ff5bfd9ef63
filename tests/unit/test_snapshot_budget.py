"""A snapshot's rows stay under the byte budget of one frame, however many rows the row limit allows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from api_edge.relay.snapshot import SNAPSHOT_MAX_BYTES, encode_rows
from contracts.live import AlertRow

AT = datetime(2026, 12, 7, tzinfo=UTC)


def rows(n: int) -> list[AlertRow]:
    return [
        AlertRow(kind="stock", sku=f"SKU-{i:06d}", state="low", available=1, updated_at=AT) for i in range(n)
    ]


def test_rows_under_the_budget_are_all_sent_and_keep_the_row_limits_verdict() -> None:
    for truncated in (False, True):
        body, cut = encode_rows(rows(3), truncated)
        assert [r["sku"] for r in json.loads(body)] == ["SKU-000000", "SKU-000001", "SKU-000002"]
        assert cut is truncated


def test_rows_past_the_budget_are_cut_whole_and_marked_truncated() -> None:
    one = len(rows(1)[0].model_dump_json())
    body, cut = encode_rows(rows(10), False, budget=2 + 4 * (one + 1))
    assert cut is True
    assert [r["sku"] for r in json.loads(body)] == [f"SKU-{i:06d}" for i in range(4)]


def test_ten_thousand_rows_fit_one_default_client_frame() -> None:
    body, cut = encode_rows(rows(10_000), False)
    assert cut is True
    assert len(body) <= SNAPSHOT_MAX_BYTES < 1024 * 1024
    assert len(json.loads(body)) > 1000
