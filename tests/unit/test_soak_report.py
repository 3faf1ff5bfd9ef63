"""The soak's verdict (bench.soak_report): each bound passes on flat figures, fails on the drift it names."""

from __future__ import annotations

from typing import Any

from bench import soak_report
from bench.soak_report import Bounds

MB = 2**20


def window(index: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "index": index,
        "seconds": 300.0,
        "ends_at_s": 300.0 * index,
        "accepted": 150_000,
        "commands_per_s": 500.0,
        "http_p99_ms": 20.0,
        "frame_p99_ms": 40.0,
        "batch_p99_ms": {"stock": 10.0, "price": 8.0},
        "rss_mb": {"edge": 125.0, "stock_worker": 90.0},
        "cpu_s": {"edge": 60.0},
        "table_bytes": {"outbox": 100 * MB, "stock_ledger": 50 * MB * index},
        "partitions_created": [f"public.outbox_p{index}"],
        "partitions_dropped": [f"public.outbox_p{index - 3}"] if index >= 4 else [],
        "lost": 0,
        "gaps": 0,
    }
    return {**base, **over}


BOUNDS = Bounds(rate=500.0, python=("edge", "stock_worker"), retained=("outbox",))


def failed(windows: list[dict[str, Any]]) -> list[str]:
    return [c.name for c in soak_report.verdict(windows, BOUNDS) if not c.ok]


def test_flat_figures_pass_every_bound() -> None:
    windows = [window(i) for i in range(1, 13)]
    assert failed(windows) == []


def test_a_p99_over_one_and_a_half_times_the_first_window_fails() -> None:
    windows = [window(i) for i in range(1, 6)]
    windows[3]["frame_p99_ms"] = 61.0
    windows[4]["batch_p99_ms"] = {"stock": 15.1, "price": 8.0}
    assert failed(windows) == ["202 -> frame p99", "stock batch p99"]


def test_rss_growth_counts_from_the_end_of_the_warm_up_window() -> None:
    windows = [window(i) for i in range(1, 6)]
    windows[0]["rss_mb"] = {"edge": 100.0, "stock_worker": 90.0}  # warm-up: growth before this is free
    windows[-1]["rss_mb"] = {"edge": 109.9, "stock_worker": 100.0}
    assert failed(windows) == ["RSS stock_worker"]


def test_a_table_that_keeps_growing_once_retention_acts_fails() -> None:
    windows = [window(i) for i in range(1, 9)]
    for i, w in enumerate(windows[3:], start=1):
        w["table_bytes"] = {"outbox": 100 * MB + i * 20 * MB}
    assert failed(windows) == ["table outbox"]


def test_table_growth_before_retention_can_act_is_free() -> None:
    windows = [window(i) for i in range(1, 9)]
    for i, w in enumerate(windows[:4]):
        w["table_bytes"] = {"outbox": (i + 1) * 40 * MB}  # filling up: 40 .. 160 MB, then flat at 160
    for w in windows[4:]:
        w["table_bytes"] = {"outbox": 160 * MB}
    steady = Bounds(rate=500.0, retained=("outbox",), steady_after_s=1200.0)
    assert [c.name for c in soak_report.check_tables(windows, steady) if not c.ok] == []
    assert [c.name for c in soak_report.check_tables(windows, BOUNDS) if not c.ok] == ["table outbox"]


def test_a_retained_table_with_no_dropped_partition_fails() -> None:
    windows = [window(i, partitions_dropped=[]) for i in range(1, 6)]
    assert failed(windows) == ["table outbox"]


def test_a_lost_command_a_live_gap_or_a_slow_window_fails() -> None:
    windows = [window(i) for i in range(1, 6)]
    windows[2]["lost"] = 1
    windows[3]["gaps"] = 2
    windows[4]["commands_per_s"] = 470.0
    assert failed(windows) == ["commands/s", "nothing lost", "live offsets"]


def test_one_window_cannot_show_rss_growth() -> None:
    assert "RSS growth" in failed([window(1)])


def test_cpu_per_command_is_over_the_whole_run() -> None:
    windows = [window(1, cpu_s={"edge": 30.0}), window(2, cpu_s={"edge": 60.0})]
    assert soak_report.cpu_per_command_us(windows) == {"edge": 1e6 * 90.0 / 300_000}
