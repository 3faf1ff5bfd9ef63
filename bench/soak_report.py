"""The soak's per-window figures and its verdict (bench.soak): pure functions over plain dicts, no I/O.

A window is a dict (it goes to the JSON report as is):
    index, seconds, accepted, commands_per_s, http_p99_ms, frame_p99_ms, batch_p99_ms {worker: ms},
    rss_mb {process: MB at the window's end}, cpu_s {process: CPU seconds in the window},
    table_bytes {table: bytes, partitions included}, partitions_created [..], partitions_dropped [..],
    lost (acknowledged commands without an outcome, found in this window), gaps (offset gaps seen by the
    unfiltered WebSocket client), webhooks (deliveries received)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Window = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Bounds:
    rate: float  # commands/s the soak offered
    min_rate_fraction: float = 0.95  # every window achieves at least this share of `rate`
    p99_factor: float = 1.5  # every window's p99 within this factor of the first window's
    rss_growth_mb: float = 10.0  # each Python process, end of window 1 -> end of the last window
    table_factor: float = 1.5  # a retained table: no larger than this x its size in the first steady window
    steady_after_s: float = (
        0.0  # from here retention can have dropped this run's rows (retention + span + ..)
    )
    python: tuple[str, ...] = ()  # processes whose RSS is bounded
    retained: tuple[str, ...] = ()  # tables whose size retention must bound


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def p99_series(windows: Sequence[Window]) -> dict[str, list[float]]:
    """Each latency figure's p99 per window, by name (HTTP, 202 -> frame, each worker's batch)."""
    series: dict[str, list[float]] = {"HTTP 202 p99": [], "202 -> frame p99": []}
    workers = sorted({w for window in windows for w in window.get("batch_p99_ms", {})})
    series.update({f"{w} batch p99": [] for w in workers})
    for window in windows:
        series["HTTP 202 p99"].append(window.get("http_p99_ms", math.nan))
        series["202 -> frame p99"].append(window.get("frame_p99_ms", math.nan))
        for w in workers:
            series[f"{w} batch p99"].append(window.get("batch_p99_ms", {}).get(w, math.nan))
    return series


def check_rate(windows: Sequence[Window], bounds: Bounds) -> Check:
    floor = bounds.rate * bounds.min_rate_fraction
    low = [(w["index"], w["commands_per_s"]) for w in windows if not w["commands_per_s"] >= floor]
    detail = f">= {floor:,.0f} commands/s in every window"
    if low:
        detail += "; below: " + ", ".join(f"window {i} {r:,.0f}/s" for i, r in low)
    return Check("commands/s", not low, detail)


def check_p99s(windows: Sequence[Window], bounds: Bounds) -> list[Check]:
    checks = []
    for name, values in p99_series(windows).items():
        first = values[0] if values else math.nan
        if not _finite(first) or first <= 0:
            checks.append(Check(name, False, "no figure in the first window"))
            continue
        limit = bounds.p99_factor * first
        over = [(i + 1, v) for i, v in enumerate(values) if not (_finite(v) and v <= limit)]
        detail = (
            f"<= {bounds.p99_factor:g} x window 1 ({first:.1f} ms) = {limit:.1f} ms; max {max(values):.1f}"
        )
        if over:
            detail += "; over: " + ", ".join(f"window {i} {v:.1f}" for i, v in over)
        checks.append(Check(name, not over, detail))
    return checks


def check_rss(windows: Sequence[Window], bounds: Bounds) -> list[Check]:
    if len(windows) < 2:
        return [Check("RSS growth", False, "needs at least 2 windows (window 1 is the warm-up)")]
    first, last = windows[0]["rss_mb"], windows[-1]["rss_mb"]
    checks = []
    for name in bounds.python:
        if name not in first or name not in last:
            checks.append(Check(f"RSS {name}", False, "not measured"))
            continue
        growth = last[name] - first[name]
        checks.append(
            Check(
                f"RSS {name}",
                growth < bounds.rss_growth_mb,
                f"{first[name]:.1f} -> {last[name]:.1f} MB ({growth:+.1f}, bound < {bounds.rss_growth_mb:g})",
            )
        )
    return checks


def _drops(window: Window, table: str) -> int:
    """Partitions of `table` dropped in the window (partition names are `<table>_...`)."""
    return sum(
        1 for name in window.get("partitions_dropped", ()) if name.split(".")[-1].startswith(f"{table}_")
    )


def check_tables(windows: Sequence[Window], bounds: Bounds) -> list[Check]:
    """From the first window that ends once retention can have dropped this run's own rows (the drops
    before that are older, empty partitions), each retained table keeps dropping partitions and stays
    within `table_factor` of its size at the end of that window."""
    steady = next((i for i, w in enumerate(windows) if w["ends_at_s"] >= bounds.steady_after_s), None)
    if steady is None:
        return [
            Check(
                "tables", False, f"the run ended before retention could act ({bounds.steady_after_s:.0f} s)"
            )
        ]
    checks = []
    for table in bounds.retained:
        drops = sum(_drops(w, table) for w in windows[steady:])
        at = windows[steady]["table_bytes"].get(table, 0)
        peak = max(w["table_bytes"].get(table, 0) for w in windows[steady:])
        limit = bounds.table_factor * at
        detail = (
            f"{drops} partitions dropped from window {steady + 1}; {at / 2**20:.1f} MB at its end, "
            f"largest since {peak / 2**20:.1f} MB (bound {bounds.table_factor:g} x = {limit / 2**20:.1f} MB)"
        )
        checks.append(Check(f"table {table}", drops > 0 and peak <= limit, detail))
    return checks


def check_outcomes(windows: Sequence[Window]) -> list[Check]:
    lost = sum(w.get("lost", 0) for w in windows)
    gaps = sum(w.get("gaps", 0) for w in windows)
    accepted = sum(w.get("accepted", 0) for w in windows)
    return [
        Check("nothing lost", lost == 0, f"{lost} of {accepted:,} acknowledged commands without an outcome"),
        Check("live offsets", gaps == 0, f"{gaps} offset gaps on the unfiltered WebSocket client"),
    ]


def verdict(windows: Sequence[Window], bounds: Bounds) -> list[Check]:
    if not windows:
        return [Check("windows", False, "no complete window")]
    return [
        check_rate(windows, bounds),
        *check_p99s(windows, bounds),
        *check_rss(windows, bounds),
        *check_tables(windows, bounds),
        *check_outcomes(windows),
    ]


def cpu_per_command_us(windows: Sequence[Window]) -> dict[str, float]:
    """CPU microseconds per acknowledged command of each process, over the whole run."""
    accepted = sum(w.get("accepted", 0) for w in windows)
    names = sorted({name for w in windows for name in w.get("cpu_s", {})})
    return {
        name: 1e6 * sum(w.get("cpu_s", {}).get(name, 0.0) for w in windows) / accepted
        if accepted
        else math.nan
        for name in names
    }


def window_markdown(window: Window) -> str:
    """One window as a markdown block: the headline figures, then RSS, tables and partitions."""
    batch = ", ".join(f"{k} {v:.1f}" for k, v in sorted(window.get("batch_p99_ms", {}).items()))
    rss = ", ".join(f"{k} {v:.0f}" for k, v in window["rss_mb"].items())
    tables = ", ".join(f"{k} {v / 2**20:.1f}" for k, v in sorted(window["table_bytes"].items()) if v)
    return "\n".join(
        [
            f"#### window {window['index']} ({window['seconds']:.0f} s, "
            f"ends at +{window['ends_at_s']:.0f} s)",
            f"- {window['commands_per_s']:,.0f} commands/s ({window['accepted']:,} acknowledged, "
            f"statuses {window.get('statuses', {})}), {window.get('webhooks', 0)} webhooks received, "
            f"{window.get('lost', 0)} lost, {window.get('gaps', 0)} live offset gaps",
            f"- p99 ms: HTTP 202 {window['http_p99_ms']:.1f}, 202 -> frame {window['frame_p99_ms']:.1f} "
            f"(p50 {window.get('frame_p50_ms', math.nan):.1f}), worker batch {batch or '-'}",
            f"- RSS MB: {rss}",
            f"- tables MB: {tables}",
            f"- partitions: {window.get('partitions_total', 0)} in all; "
            f"created {len(window.get('partitions_created', []))}, "
            f"dropped {len(window.get('partitions_dropped', []))}",
            "",
        ]
    )


def verdict_markdown(checks: Sequence[Check], cpu_us: Mapping[str, float], profile: str) -> str:
    lines = [f"### verdict (profile {profile})", "", "| bound | ok | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.ok else 'NO'} | {c.detail} |" for c in checks]
    lines += [
        "",
        "CPU per acknowledged command, us: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu_us.items()),
        "",
    ]
    return "\n".join(lines)
