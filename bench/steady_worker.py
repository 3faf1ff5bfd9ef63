"""The stock worker alone at a steady command rate: CPU per command of worker, PostgreSQL and Kafka, batch
sizes, and send -> batch start latency. For the per-batch fixed costs that dominate at moderate rates
(issue 20), without the edge and the relays' CPU and noise.

    python -m bench.steady_worker [--rate 1000] [--duration 15] [--skus 1000] [--tree DIR]
                                  [--env NAME=VALUE ...] [--json out.json]

On YOUR OWN stack (it recreates the stock command topics and truncates the stock tables). The worker is
the Procfile's stock_worker, run from --tree (its working directory and PYTHONPATH: A/B against the tree
before) with this interpreter, and --env on top of the environment. Commands (bench.load.generate, no bad
records) go out on a fixed schedule through a producer with the edge's settings (acks=all, idempotent,
linger 2 ms, key = SKU). CPU (user + sys) is taken from the first send to the last command's row in
processed_commands; latency is the send (wall clock) -> `processed_commands.applied_at` (the worker's
clock when its batch transaction began, after any lingering).
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
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency

from bench import load, stacks
from bench.live_fanout import free_port
from bench.stock_throughput import Snapshot, StackProcs, _tree_delta, counter, parse_metrics
from contracts.topics import STOCK_COMMANDS
from infra.kafka import raw_producer
from infra.settings import get_settings
from tests import processes

HEADERS = [("content-type", b"application/json")]


def start_worker(tree: Path, port: int, log_dir: Path, env: dict[str, str]) -> processes.Process:
    log = log_dir / "stock_worker.log"
    popen = subprocess.Popen(
        [sys.executable, "-m", "workers.stock_worker.main"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree), "INVMON_STOCK_WORKER_PORT": str(port), **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return processes.Process("stock_worker", port, popen, log)


async def send_paced(settings: Any, records: list[tuple[bytes, bytes]], rate: float) -> list[int]:
    """Send each record when due (start + i / rate); the wall-clock ns of each send."""
    producer = raw_producer(settings, client_id="bench-steady")
    await producer.start()
    sent: list[int] = []
    try:
        start = time.perf_counter()
        pending = []
        for i, (key, value) in enumerate(records):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(time.time_ns())
            pending.append(await producer.send(STOCK_COMMANDS.name, value, key=key, headers=HEADERS))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    if stacks.default_stack(settings.stack_dir):
        raise SystemExit("refusing to wipe the default stack dirs: set INVMON_STACK_DIR")
    count = int(args.rate * args.duration)
    await load.reset_topics(settings.kafka_bootstrap, settings.kafka_partitions, settings.kafka_replication)
    await load.reset_tables(settings.database_url)
    await load.register_directly(settings.database_url, args.skus, settings.alert_clear_margin_pct)
    generated = load.generate(count, args.skus, seed=7, bad_per_mille=0, reject_per_mille=0)
    ids = [uuid.UUID(json.loads(value)["command_id"]) for _, value in generated.records]
    env = dict(item.split("=", 1) for item in args.env)
    dsn = load.asyncpg_dsn(settings.database_url)
    stack = StackProcs.load(settings)
    tree = Path(args.tree)  # made absolute in main
    with tempfile.TemporaryDirectory() as log_dir:
        worker = start_worker(tree, free_port(), Path(log_dir), env)
        try:
            processes.wait_ready(worker)
            wp = psutil.Process(worker.popen.pid)
            conn = await asyncpg.connect(dsn)
            try:
                base = await conn.fetchval("SELECT count(*) FROM processed_commands")
                first = stack.snapshot(Snapshot(time.perf_counter(), 0, 0, 0, 0))
                w0 = sum(wp.cpu_times()[:2])
                sender = asyncio.create_task(send_paced(settings, generated.records, args.rate))
                deadline = time.monotonic() + args.duration + 60
                while await conn.fetchval("SELECT count(*) FROM processed_commands") - base < count:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the worker did not apply every command in time")
                    await asyncio.sleep(0.05)
                w1 = sum(wp.cpu_times()[:2])
                last = stack.snapshot(Snapshot(time.perf_counter(), 0, 0, 0, 0))
                sent = await sender
                rows = await conn.fetch(
                    "SELECT command_id, applied_at FROM processed_commands WHERE command_id = ANY($1)", ids
                )
            finally:
                await conn.close()
            async with httpx.AsyncClient() as client:
                scraped = await client.get(f"http://127.0.0.1:{worker.port}/metrics")
            metrics = parse_metrics(scraped.text)
        finally:
            worker.stop()
    applied = {r["command_id"]: r["applied_at"].timestamp() * 1e9 for r in rows}
    lat = sorted((applied[c] - s) / 1e6 for c, s in zip(ids, sent, strict=True) if c in applied)
    batches = counter(metrics, "invmon_batch_records_count", worker="stock")
    wall = last.t - first.t

    def phase(name: str) -> float:
        total = counter(metrics, "invmon_batch_phase_seconds_sum", worker="stock", phase=name)
        n = counter(metrics, "invmon_batch_phase_seconds_count", worker="stock", phase=name)
        return 1000 * total / n if n else 0.0

    us = {
        "worker": 1e6 * (w1 - w0) / count,
        "postgres": 1e6 * _tree_delta(first.pg, last.pg) / count,
        "kafka": 1e6 * _tree_delta(first.kafka, last.kafka) / count,
    }
    us["sum"] = sum(us.values())
    return {
        "tree": str(args.tree),
        "env": env,
        "commands": count,
        "window_s": wall,
        "batches": batches,
        "commands_per_batch": count / batches if batches else float("nan"),
        "cpu_us_per_command": us,
        "cpu_pct": {k: v * count / wall / 1e4 for k, v in us.items()},
        "send_to_batch_start_ms": {
            "p50": lat[len(lat) // 2],
            "p99": lat[int(len(lat) * 0.99)],
            "mean": statistics.fmean(lat),
        },
        "phase_mean_ms": {p: phase(p) for p in ("between", "linger", "decode", "transaction", "ack")},
        "load": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--tree", default=".", help="source tree the worker runs from")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the worker")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    args.tree = os.path.abspath(args.tree)
    result = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    us, pct, lat = result["cpu_us_per_command"], result["cpu_pct"], result["send_to_batch_start_ms"]
    print(f"tree {result['tree']} env {result['env']}")
    print(
        f"batches {result['batches']:.0f}, {result['commands_per_batch']:.1f} commands/batch; send -> batch "
        f"start p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms; load {result['load'][0]:.1f}"
    )
    print("CPU us/command " + ", ".join(f"{k} {v:.0f} ({pct[k]:.1f} %)" for k, v in us.items()))
    print("phase means ms " + ", ".join(f"{k} {v:.2f}" for k, v in result["phase_mean_ms"].items()))


if __name__ == "__main__":
    main()
