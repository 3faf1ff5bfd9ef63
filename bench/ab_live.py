"""A/B of the whole pipeline at a steady rate: bench.live_e2e on two source trees, alternating.

    python -m bench.ab_live --before /work/wt/before-s9 [--after .] [--rounds 3] [--rate 1000]
                            [--duration 15] [--skus 1000] [--profile run] [--out DIR] [--json FILE]

Each run is `python -m bench.live_e2e --rate R --duration D --json ...` from one tree (its own working
directory and PYTHONPATH, so the edge, the workers and the relays run that tree's code; the interpreter and
the installed dependencies are this one's), on the bench stack of bench.stacks (INVMON_STACK_DIR and its
ports; brought up if needed). Like bench.ab_stock, each tree gets its own database in the stack's
PostgreSQL (`invmon_ab_before`, `invmon_ab_after`, migrated with that tree's migrations); Kafka, Redis and
PostgreSQL's server are shared. One warm-up run of the after tree comes first and is not counted (a Kafka
JVM pays JIT compilation in its first minutes); then the trees alternate (before, after, before, ...) so
that a change in the box's load falls on both.

Printed: per run, the total CPU and the latencies; then per process (edge, stock worker, outbox relay,
live relay, Kafka, PostgreSQL, Redis, total) CPU % of one core and microseconds of CPU per command
(% of a core * 10,000 / commands per second), before / after medians and after / before; the same for
202 -> frame p50/p99 and the batch sizes (worker commands per batch, outbox relay rows per round). A figure
a tree's bench.live_e2e does not write shows as "-". --json writes the runs and the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import stacks
from bench.ab_stock import prepare_trees

TREES = ("before", "after")
# Name in the table -> key in live_e2e's cpu_percent_of_one_core (the stack's services by their state name).
PROCESSES = {
    "edge": "edge",
    "stock worker": "stock_worker",
    "outbox relay": "outbox_relay",
    "live relay": "live_relay",
    "Kafka": "kafka",
    "PostgreSQL": "postgres",
    "Redis": "redis",
}
TOTAL = "total"


def _get(run: Mapping[str, Any], *path: str) -> float | None:
    value: Any = run
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def cpu_percent(run: Mapping[str, Any]) -> dict[str, float | None]:
    """Each process's % of one core in one live_e2e run, and their total (None if one is missing)."""
    out = {name: _get(run, "cpu_percent_of_one_core", key) for name, key in PROCESSES.items()}
    values = [v for v in out.values() if v is not None]
    out[TOTAL] = sum(values) if len(values) == len(PROCESSES) else None
    return out


def figures(run: Mapping[str, Any]) -> dict[str, float | None]:
    """The figures the table compares, from one run: CPU % and us per command per process, latencies and
    batch sizes."""
    rate = _get(run, "rate")
    out: dict[str, float | None] = {}
    for name, percent in cpu_percent(run).items():
        out[f"{name} % of a core"] = percent
        # % of one core = CPU s per s * 100; at `rate` commands/s, us per command = % * 1e4 / rate.
        out[f"{name} us/command"] = percent * 1e4 / rate if percent is not None and rate else None
    out["202 -> frame p50 ms"] = _get(run, "p50_ms")
    out["202 -> frame p99 ms"] = _get(run, "p99_ms")
    out["HTTP 202 p99 ms"] = _get(run, "http_202_p99_ms")
    out["worker commands per batch"] = _get(run, "worker_batches", "commands_per_batch")
    out["outbox relay rows per round"] = _get(run, "outbox_relay_rounds", "rows", "mean")
    return out


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def table(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per figure: each tree's values and median, and after / before of the medians."""
    names = list(figures({}))
    b_figs = [figures(r) for r in before]
    a_figs = [figures(r) for r in after]
    rows = []
    for name in names:
        b_values = [f[name] for f in b_figs]
        a_values = [f[name] for f in a_figs]
        b_med, a_med = _median(b_values), _median(a_values)
        rows.append(
            {
                "figure": name,
                "before": b_values,
                "after": a_values,
                "before_median": b_med,
                "after_median": a_med,
                "ratio": a_med / b_med if a_med is not None and b_med else None,
            }
        )
    return rows


def table_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    def fmt(v: float | None, digits: int = 1) -> str:
        return "-" if v is None else f"{v:,.{digits}f}"

    text = [["figure", "before (median; runs)", "after (median; runs)", "after/before"]]
    for r in rows:
        text.append(
            [
                r["figure"],
                f"{fmt(r['before_median'])}; " + ", ".join(fmt(v) for v in r["before"]),
                f"{fmt(r['after_median'])}; " + ", ".join(fmt(v) for v in r["after"]),
                fmt(r["ratio"], 3),
            ]
        )
    widths = [max(len(line[i]) for line in text) for i in range(len(text[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in text]


def run_once(
    tree: Path, env: dict[str, str], args: argparse.Namespace, path: Path, log_path: Path
) -> dict[str, Any] | None:
    command = [
        sys.executable, "-m", "bench.live_e2e", "--rate", str(args.rate), "--duration", str(args.duration),
        "--skus", str(args.skus), "--json", str(path),
    ]  # fmt: skip
    with log_path.open("w") as log:
        done = subprocess.run(command, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if not path.exists():
        print(f"  failed (rc {done.returncode}), see {log_path}", flush=True)
        return None
    run: dict[str, Any] = json.loads(path.read_text())
    if done.returncode != 0:
        print(f"  rc {done.returncode} (frames missing?), see {log_path}; counted", flush=True)
    return run


def summary_line(label: str, run: Mapping[str, Any]) -> str:
    f = figures(run)

    def fmt(name: str) -> str:
        v = f[name]
        return "-" if v is None else f"{v:.1f}"

    return (
        f"{label}: total {fmt('total % of a core')} % of a core ({fmt('total us/command')} us/command), "
        f"outbox relay {fmt('outbox relay % of a core')}, live relay {fmt('live relay % of a core')}; "
        f"202 -> frame p50 {fmt('202 -> frame p50 ms')} p99 {fmt('202 -> frame p99 ms')} ms; "
        f"rows/round {fmt('outbox relay rows per round')}; load {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True, help="the tree before (a git worktree)")
    parser.add_argument("--after", default=".", help="the tree after (default: this one)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree, alternating")
    parser.add_argument("--rate", type=float, default=1000.0, help="commands per second")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of sending per run")
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--no-warmup", action="store_true", help="skip the uncounted first run")
    parser.add_argument(
        "--profile", choices=stacks.PROFILES, default="run", help="the bench stack to run on (bench.stacks)"
    )
    parser.add_argument("--out", help="each run's JSON and log go here (default: a new temp dir)")
    parser.add_argument("--json", help="write the runs and the table to this file")
    args = parser.parse_args()
    trees = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-ab-live-"))
    out.mkdir(parents=True, exist_ok=True)
    base, envs = prepare_trees(args.profile, trees)
    stack = f"profile {args.profile} ({base['INVMON_STACK_DIR']})"
    print(
        f"before {trees['before']}, after {trees['after']}; stack {stack}; bench.live_e2e --rate "
        f"{args.rate:g} --duration {args.duration:g}; out {out}",
        flush=True,
    )
    if not args.no_warmup:
        print("warm-up run (after tree, not counted) ...", flush=True)
        run_once(trees["after"], envs["after"], args, out / "warmup.json", out / "warmup.log")
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in TREES}
    failed = 0
    for round_no in range(1, args.rounds + 1):
        for label in TREES:
            one = run_once(
                trees[label],
                envs[label],
                args,
                out / f"{label}-{round_no}.json",
                out / f"{label}-{round_no}.log",
            )
            if one is None:
                failed += 1
                continue
            runs[label].append(one)
            print(summary_line(f"{label:<6} round {round_no}", one), flush=True)
    rows = table(runs["before"], runs["after"])
    print(f"\nstack {stack}; medians of {len(runs['before'])} before and {len(runs['after'])} after runs")
    print("\n".join(table_lines(rows)))
    if args.json:
        result = {
            "stack_profile": args.profile,
            "stack_dir": base["INVMON_STACK_DIR"],
            "trees": {k: str(v) for k, v in trees.items()},
            "rate": args.rate,
            "duration": args.duration,
            "runs": runs,
            "table": rows,
        }
        Path(args.json).write_text(json.dumps(result, indent=2))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
