"""bench.ab_live's table: per process CPU and us per command, medians, after / before, and runs of a tree
whose bench.live_e2e lacks a figure."""

from __future__ import annotations

from typing import Any

import pytest

from bench.ab_live import PROCESSES, figures, table, table_lines


def run(scale: float, *, rate: float = 1000.0, rows: float | None = 5.5) -> dict[str, Any]:
    cpu = {key: 10.0 * scale for key in PROCESSES.values()}
    out: dict[str, Any] = {
        "rate": rate,
        "cpu_percent_of_one_core": {**cpu, "bench (this driver)": 50.0, "machine": 150.0},
        "p50_ms": 12.0 * scale,
        "p99_ms": 40.0 * scale,
        "worker_batches": {"commands_per_batch": 5.0},
    }
    if rows is not None:
        out["outbox_relay_rounds"] = {"rows": {"mean": rows}}
    return out


def row(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in rows if r["figure"] == name)


def test_us_per_command_and_total_leave_the_driver_out() -> None:
    f = figures(run(1.0, rate=500.0))
    assert f["outbox relay % of a core"] == 10.0
    assert f["outbox relay us/command"] == pytest.approx(200.0)  # 0.1 core / 500 per s
    assert f["total % of a core"] == pytest.approx(70.0)
    assert f["total us/command"] == pytest.approx(1400.0)


def test_medians_and_ratio_after_over_before() -> None:
    rows = table([run(1.0), run(3.0), run(2.0)], [run(1.0), run(0.5), run(0.9)])
    relay = row(rows, "outbox relay us/command")
    assert relay["before_median"] == pytest.approx(200.0)
    assert relay["after_median"] == pytest.approx(90.0)
    assert relay["ratio"] == pytest.approx(0.45)
    assert row(rows, "202 -> frame p99 ms")["ratio"] == pytest.approx(0.45)


def test_a_figure_the_before_tree_lacks_shows_as_missing() -> None:
    rows = table([run(1.0, rows=None)], [run(1.0)])
    rounds = row(rows, "outbox relay rows per round")
    assert rounds["before_median"] is None
    assert rounds["ratio"] is None
    assert rounds["after_median"] == 5.5
    missing_process = run(1.0)
    del missing_process["cpu_percent_of_one_core"]["redis"]
    assert figures(missing_process)["total % of a core"] is None
    assert any(
        line.lstrip().startswith("outbox relay rows per round") and " - " in line
        for line in table_lines(rows)
    )
