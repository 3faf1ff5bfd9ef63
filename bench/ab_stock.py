"""A/B of the stock pipeline's CPU per command: bench.stock_throughput on two source trees, alternating.

    python -m bench.ab_stock --before /work/wt/before-s7 [--after .] [--rounds 3] [--commands 50000]
                             [--skus 2000] [--out DIR]

Each run is `python -m bench.stock_throughput --commands N --skus S --naive-commands 0` from one tree
(its own working directory and PYTHONPATH, so the worker process runs that tree's code; the interpreter
and the installed dependencies are this one's), on the `run` bench stack of bench.stacks (INVMON_STACK_DIR
and its ports; brought up if needed). A schema change between the trees would make one database wrong for
the other, so each tree gets its own database in the stack's PostgreSQL (`invmon_ab_before`,
`invmon_ab_after`, created by the superuser and migrated with that tree's migrations); Kafka, Redis and
PostgreSQL's server are shared. Runs alternate (before, after, before, after, ...) so that a change in the
box's load falls on both.

Printed: per run, commands/s and CPU microseconds per command of the worker, PostgreSQL (postmaster and
backends) and Kafka; then per round the ratio after / before of the worker's and of worker + PostgreSQL
(the pipeline's own CPU per command), their medians, and whether the median is within --tolerance
(default 10 %, issue 17's acceptance). Exit 1 if a run failed or the median is outside the tolerance.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

from bench import stacks
from infra.settings import Settings
from invmon.stack.paths import StackPaths

TREES = ("before", "after")


def database_url(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{name}"


async def ensure_database(settings: Settings, name: str) -> None:
    """Create `name` owned by the stack's user, as the stack's superuser over its socket, if missing."""
    paths = StackPaths.from_settings(settings)
    owner = settings.database_url.split("://", 1)[1].split(":", 1)[0]
    conn = await asyncpg.connect(
        host=str(paths.pg_socket_dir), port=settings.postgres_port, user="postgres", database="postgres"
    )
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    finally:
        await conn.close()


def tree_env(base: dict[str, str], tree: Path, db_name: str) -> dict[str, str]:
    return {
        **base,
        "PYTHONPATH": str(tree),
        "INVMON_DATABASE_URL": database_url(base["INVMON_DATABASE_URL"], db_name),
    }


def migrate(tree: Path, env: dict[str, str]) -> None:
    command = [sys.executable, "-c", "from invmon.cli import app; app()", "db", "upgrade"]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"migrating {tree} failed:\n{done.stdout}{done.stderr}")


def prepare_trees(profile: str, trees: dict[str, Path]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The bench stack of `profile`, up and in this process's environment, and each tree's environment on
    its own database there, migrated by that tree's migrations. (The stack's environment, each tree's.)"""
    base = stacks.stack_env(profile)
    # Absolute: each tree's run has its own working directory, and finds the stack's processes by it.
    base["INVMON_STACK_DIR"] = str(Path(base["INVMON_STACK_DIR"]).resolve())
    stacks.ensure_stack(base)
    os.environ.update(base)
    settings = Settings()
    envs = {}
    for label, tree in trees.items():
        asyncio.run(ensure_database(settings, f"invmon_ab_{label}"))
        envs[label] = tree_env(base, tree, f"invmon_ab_{label}")
        migrate(tree, envs[label])
    return base, envs


def per_command(run: dict[str, Any]) -> dict[str, float]:
    b = run["batched"]
    n = b["window_commands"]
    return {
        "rate": b["rate"],
        "worker": 1e6 * b["worker_cpu_s"] / n,
        "postgres": 1e6 * b["pg_cpu_s"] / n,
        "kafka": 1e6 * b["kafka_cpu_s"] / n,
    }


def paired_ratios(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict[str, list[float]]:
    """after / before per round, for the worker and for worker + PostgreSQL."""
    pairs = list(zip(before, after, strict=False))
    return {
        "worker": [a["worker"] / b["worker"] for b, a in pairs],
        "worker+postgres": [(a["worker"] + a["postgres"]) / (b["worker"] + b["postgres"]) for b, a in pairs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True, help="the tree before (a git worktree)")
    parser.add_argument("--after", default=".", help="the tree after (default: this one)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree, alternating")
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument(
        "--locations",
        type=int,
        default=0,
        help="the after tree's commands spread over this many locations (the before tree predates them)",
    )
    parser.add_argument(
        "--profile", choices=stacks.PROFILES, default="run", help="the bench stack to run on (bench.stacks)"
    )
    parser.add_argument("--tolerance", type=float, default=0.10, help="allowed rise of CPU per command")
    parser.add_argument("--out", help="each run's JSON and log go here (default: a new temp dir)")
    args = parser.parse_args()
    trees = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-ab-stock-"))
    out.mkdir(parents=True, exist_ok=True)
    base, envs = prepare_trees(args.profile, trees)
    print(f"before {trees['before']}, after {trees['after']}; stack {base['INVMON_STACK_DIR']}; out {out}")
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in TREES}
    failed = 0
    for round_no in range(1, args.rounds + 1):
        for label in TREES:
            path = out / f"{label}-{round_no}.json"
            command = [
                sys.executable, "-m", "bench.stock_throughput", "--commands", str(args.commands),
                "--skus", str(args.skus), "--naive-commands", "0", "--json", str(path),
            ]  # fmt: skip
            if label == "after" and args.locations:
                command += ["--locations", str(args.locations)]
            with (out / f"{label}-{round_no}.log").open("w") as log:
                done = subprocess.run(
                    command,
                    cwd=trees[label],
                    env=envs[label],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            if done.returncode != 0 or not path.exists():
                failed += 1
                print(f"{label} round {round_no}: failed (rc {done.returncode}), see the log in {out}")
                continue
            one = per_command(json.loads(path.read_text()))
            runs[label].append(one)
            print(
                f"{label:<6} round {round_no}: {one['rate']:>8,.0f} commands/s; CPU us per command: worker "
                f"{one['worker']:.1f}, PostgreSQL {one['postgres']:.1f}, Kafka {one['kafka']:.1f}; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    ratios = paired_ratios(runs["before"], runs["after"])
    verdict_ok = False
    for name, values in ratios.items():
        if not values:
            continue
        median = statistics.median(values)
        print(f"after / before, {name}: " + ", ".join(f"{v:.3f}" for v in values) + f"; median {median:.3f}")
        if name == "worker+postgres":
            verdict_ok = median <= 1 + args.tolerance
            print(
                f"stock pipeline CPU per command (worker + PostgreSQL), after within {args.tolerance:.0%} "
                f"of before: {'yes' if verdict_ok else 'NO'}"
            )
    (out / "ab.json").write_text(json.dumps({"runs": runs, "ratios": ratios}, indent=2))
    sys.exit(0 if verdict_ok and not failed else 1)


if __name__ == "__main__":
    main()
