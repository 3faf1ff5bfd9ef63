"""The pure parts of the operations reads and `invmon status`: lag arithmetic, reason categories, the
per-group summary, and a screen that renders whatever is missing."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from db.dead_letter_repo import OTHER, category, category_sql
from db.ops_reads import FailingDelivery, OutboxBacklog
from infra.consumer_lag import PartitionLag, lag_of
from invmon.status import Health, Snapshot, render, summarise_lag


def test_lag_counts_from_the_committed_offset_or_the_log_start() -> None:
    assert lag_of(committed=40, start=0, end=100) == 60
    assert lag_of(committed=None, start=10, end=100) == 90  # never committed: the group starts at earliest
    assert lag_of(committed=5, start=30, end=100) == 70  # retention deleted what it had not read
    assert lag_of(committed=100, start=0, end=100) == 0


def test_reason_categories_are_bounded() -> None:
    assert category("invalid command: body: Invalid JSON: EOF") == "undecodable"
    assert category("invalid command: quantity: must be > 0") == "invalid"
    assert category("anything else, however long " * 50) == OTHER
    assert category_sql("reason").startswith("CASE WHEN starts_with(reason, 'empty record value')")


def test_the_summary_names_each_groups_worst_partition() -> None:
    lags = [
        PartitionLag("g", "t", 0, 5, 7, 2),
        PartitionLag("g", "t", 1, 0, 9, 9),
        PartitionLag("h", "u", 0, None, 3, 3),
    ]
    [g, h] = summarise_lag(lags)
    assert (g.group, g.partitions, g.total, g.max_lag, g.max_partition) == ("g", 2, 11, 9, "t/1")
    assert (h.total, h.max_partition) == (3, "u/0")


def screen(snapshot: Snapshot) -> str:
    console = Console(file=io.StringIO(), width=140, color_system=None)
    console.print(render(snapshot))
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def test_the_screen_shows_what_could_not_be_read() -> None:
    down = Snapshot(
        at=datetime(2026, 12, 7, tzinfo=UTC),
        health=[Health("edge", 8000, "down", "nothing listening"), Health("notifier", 9104, "ready", "")],
        lag="KafkaConnectionError",
        outbox="no answer within 5 s",
        dead_letters="no answer within 5 s",
        failing="no answer within 5 s",
        ws_clients="live relay down",
    )
    text = screen(down)
    assert "1 process(es) not ready" in text
    assert "unavailable: KafkaConnectionError" in text
    assert text.count("unavailable:") == 4  # lag, outbox, dead letters, failing deliveries
    assert "live relay down" in text


def test_alike_failing_deliveries_are_one_row() -> None:
    failing = FailingDelivery("erp", "webhook", "https://erp.example/h", 3, "HTTP 503", None, False)
    other = FailingDelivery("mail", "email", "ops@example.com", 1, "SMTP 451", None, True)
    up = Snapshot(
        at=datetime(2026, 12, 7, tzinfo=UTC),
        health=[],
        lag=[],
        outbox=OutboxBacklog(0, None),
        dead_letters={},
        failing=[failing, failing, failing, other],
        ws_clients=3.0,
    )
    text = screen(up)
    assert "erp (x3)" in text
    assert "disabled" in text
    assert "gave up" in text
