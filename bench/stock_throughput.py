"""Sustained stock commands/s from Kafka to PostgreSQL: the real stock worker vs a naive worker.

    python -m bench.stock_throughput --commands 200000 --skus 2000 --naive-commands 5000 [--json out.json]

What one run does, on YOUR OWN stack (it deletes the stock command topics and truncates the stock tables;
it refuses the default `.stack` / `.stack-test` stack dirs unless --force):

1. batched phase: recreate `invmon.stock.commands.v1` (+ dlq), truncate the stock tables, register the SKUs
   directly with the worker's own apply path, publish N commands (acks=all, idempotent, key = SKU,
   linger 5 ms, many sends in flight), THEN start the real `stock_worker` Procfile process with a fresh
   consumer group. It drains the backlog: per-record decode + dead letters, one transaction per batch with
   idempotency claims, ledger and outbox, offsets committed after the DB commit. The window runs from
   the first sample showing applied commands to the sample showing all N (its /metrics, every 100 ms);
   worker CPU (user+sys) and RSS come from psutil over the same window.
2. naive phase: the same from a clean slate with M commands through `bench.naive_worker` (one transaction
   and one offset commit per record, same decoder and apply code); progress from processed_commands.
3. checks (every valid command has exactly one processed_commands row, dead letters on the DLQ topic,
   consumer lag 0 after the worker stops) and a plain-text report; --json writes the figures too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench import floor as floor_bench
from bench import load, stacks
from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.settings import Settings, get_settings
from tests import processes

ROOT = Path(__file__).resolve().parent.parent
RSS_LIMIT_MB = 250.0
TARGET_PER_S = 30_000
TARGET_RATIO = 20.0  # issue 3: ">= 20x the naive version"


# --------------------------------------------------------------------------------------------- sampling


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _tree_cpu(root: psutil.Process | None) -> dict[int, float]:
    """CPU seconds of a process and all its children (PostgreSQL backends, the JVM's threads are one pid)."""
    if root is None:
        return {}
    out: dict[int, float] = {}
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            out[proc.pid] = _cpu_s(proc)
    return out


def _tree_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def _system_busy_s() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


@dataclass(slots=True)
class Snapshot:
    t: float
    done: float  # commands handled (applied + rejected + duplicate)
    dead: float
    cpu_s: float  # the worker process
    rss: int
    pg: dict[int, float] = field(default_factory=dict)
    kafka: dict[int, float] = field(default_factory=dict)
    system_busy_s: float = 0.0
    relay_cpu_s: float = 0.0  # the outbox relay, when --with-relay
    relay_rss: int = 0


@dataclass(slots=True)
class StackProcs:
    postgres: psutil.Process | None
    kafka: psutil.Process | None

    @classmethod
    def load(cls, settings: Settings) -> StackProcs:
        path = (
            ROOT / settings.stack_dir if not settings.stack_dir.is_absolute() else settings.stack_dir
        ) / "state.json"
        procs = json.loads(path.read_text()).get("procs", {}) if path.exists() else {}

        def one(name: str) -> psutil.Process | None:
            try:
                return psutil.Process(int(procs[name]["pid"]))
            except (KeyError, psutil.Error):
                return None

        return cls(one("postgres"), one("kafka"))

    def snapshot(self, snap: Snapshot) -> Snapshot:
        snap.pg = _tree_cpu(self.postgres)
        snap.kafka = _tree_cpu(self.kafka)
        snap.system_busy_s = _system_busy_s()
        return snap


# --------------------------------------------------------------------------------------------- metrics


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _stock(labels: frozenset[tuple[str, str]]) -> bool:
    return dict(labels).get("worker", "stock") == "stock"


def counter(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **want: str) -> float:
    return sum(
        v
        for (n, labels), v in metrics.items()
        if n == name and _stock(labels) and all(dict(labels).get(k) == x for k, x in want.items())
    )


@dataclass(frozen=True, slots=True)
class Histogram:
    name: str
    buckets: list[tuple[float, float]]  # (upper bound, cumulative count)
    total: float
    count: float

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def quantile(self, q: float) -> tuple[float, bool]:
        """Prometheus' histogram_quantile: linear inside the bucket. (value, exact_upper_bound_hit_inf)."""
        if not self.count:
            return float("nan"), False
        rank = q * self.count
        lower, below = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                if bound == float("inf"):
                    return lower, True  # beyond the last finite bucket: only a lower bound is known
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0), False
            lower, below = bound, cumulative
        return lower, True


def histogram(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], suffix: str) -> Histogram | None:
    """The stock worker's histogram whose name ends with `suffix` (names moved between versions)."""
    names = {
        n[: -len("_bucket")] for (n, labels) in metrics if n.endswith(f"{suffix}_bucket") and _stock(labels)
    }
    if not names:
        return None
    name = sorted(names)[0]
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (n, labels), v in metrics.items()
        if n == f"{name}_bucket" and _stock(labels)
    )
    return Histogram(name, buckets, counter(metrics, f"{name}_sum"), counter(metrics, f"{name}_count"))


# --------------------------------------------------------------------------------------------- phases


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def db_batches(dsn: str) -> list[tuple[float, int]]:
    """(applied_at, rows) per transaction: every row of one batch carries the batch's clock reading."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM applied_at)::float8 AS t, count(*) AS n FROM processed_commands"
            " WHERE command_type <> 'register_item' GROUP BY applied_at ORDER BY applied_at"
        )
    finally:
        await conn.close()
    return [(r["t"], r["n"]) for r in rows]


async def db_check(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT"
            " (SELECT count(*) FROM processed_commands WHERE command_type <> 'register_item') AS processed,"
            " (SELECT count(*) FROM processed_commands WHERE status = 'applied'"
            "   AND command_type <> 'register_item') AS applied,"
            " (SELECT count(*) FROM processed_commands WHERE status = 'rejected') AS rejected,"
            " (SELECT count(*) FROM stock_ledger) AS ledger,"
            " (SELECT count(*) FROM outbox) AS outbox,"
            " (SELECT count(*) FROM items) AS items"
        )
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


async def db_progress(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval(
        "SELECT count(*) FROM processed_commands WHERE command_type <> 'register_item'"
    )
    return int(value)


@dataclass(slots=True)
class PhaseResult:
    name: str
    commands: int
    bad: int
    expected_rejections: int
    mix: dict[str, int]
    publish_s: float
    register_s: float
    window_s: float = 0.0
    window_commands: float = 0.0
    worker_cpu_s: float = 0.0
    pg_cpu_s: float = 0.0
    kafka_cpu_s: float = 0.0
    system_busy_s: float = 0.0
    relay_cpu_s: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)
    rss_trace_mb: list[tuple[float, float]] = field(default_factory=list)  # (fraction done, MB)
    batch: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    db_rate: float = float("nan")

    @property
    def rate(self) -> float:
        return self.window_commands / self.window_s if self.window_s else float("nan")

    @property
    def cpu_us_per_command(self) -> float:
        return 1e6 * self.worker_cpu_s / self.window_commands if self.window_commands else float("nan")


async def prepare(
    settings: Settings,
    commands: int,
    skus: int,
    seed: int,
    bad_per_mille: float,
    reject_per_mille: float,
    name: str,
    locations: int = 0,
) -> PhaseResult:
    await load.reset_topics(settings.kafka_bootstrap, settings.kafka_partitions, settings.kafka_replication)
    await load.reset_tables(settings.database_url)
    register_s = await load.register_directly(
        settings.database_url, skus, settings.alert_clear_margin_pct, locations
    )
    generated = load.generate(
        commands,
        skus,
        seed=seed,
        bad_per_mille=bad_per_mille,
        reject_per_mille=reject_per_mille,
        locations=locations,
    )
    publish_s = await load.publish(settings.kafka_bootstrap, STOCK_COMMANDS.name, generated.records)
    result = PhaseResult(
        name,
        generated.valid,
        generated.bad,
        generated.expected_rejections,
        generated.mix,
        publish_s,
        register_s,
    )
    return result


async def sample_until(
    procs: list[processes.Process],
    stack: StackProcs,
    progress: Callable[[], Any],
    target: int,
    bad: int,
    timeout_s: float,
    relay: processes.Process | None = None,
) -> tuple[list[Snapshot], Snapshot, Snapshot]:
    """Sample every 100 ms until `progress()` reports all commands (and dead letters) handled.

    CPU is summed over the worker processes; RSS is the largest single process (the limit is per process).
    """
    watched = [psutil.Process(p.popen.pid) for p in procs]
    relay_ps = psutil.Process(relay.popen.pid) if relay is not None else None
    samples: list[Snapshot] = []
    first: Snapshot | None = None
    deadline = time.monotonic() + timeout_s
    while True:
        for proc in [*procs, *([relay] if relay else [])]:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited: {proc.log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout_s}s; last sample {samples[-1:]}")
        reading = await progress()
        if reading is not None:
            done, dead = reading
            cpu = sum(_cpu_s(ps) for ps in watched)
            rss = max(ps.memory_info().rss for ps in watched)
            snap = Snapshot(time.perf_counter(), done, dead, cpu, rss)
            if relay_ps is not None:
                snap.relay_cpu_s, snap.relay_rss = _cpu_s(relay_ps), relay_ps.memory_info().rss
            samples.append(snap)
            if first is None and done > 0:
                first = stack.snapshot(snap)
            if first is not None and done >= target and dead >= bad:
                return samples, first, stack.snapshot(snap)
        await asyncio.sleep(0.1)


def _fill_window(result: PhaseResult, samples: list[Snapshot], first: Snapshot, last: Snapshot) -> None:
    result.window_s = last.t - first.t
    result.window_commands = last.done - first.done
    result.worker_cpu_s = last.cpu_s - first.cpu_s
    result.pg_cpu_s = _tree_delta(first.pg, last.pg)
    result.kafka_cpu_s = _tree_delta(first.kafka, last.kafka)
    result.system_busy_s = last.system_busy_s - first.system_busy_s
    result.relay_cpu_s = last.relay_cpu_s - first.relay_cpu_s
    loaded = [s for s in samples if first.t <= s.t <= last.t]
    total = max(1.0, last.done)
    result.rss_trace_mb = [(s.done / total, s.rss / 2**20) for s in loaded]
    mb = [s.rss / 2**20 for s in loaded]
    quarter = max(1, len(mb) // 4)
    result.rss_mb = {
        "at_start_of_window": mb[0],
        "peak_under_load": max(mb),
        "end_of_window": mb[-1],
        "median_2nd_quarter": statistics.median(mb[quarter : 2 * quarter] or mb),
        "median_4th_quarter": statistics.median(mb[-quarter:]),
    }
    if last.relay_rss:
        relay_mb = [s.relay_rss / 2**20 for s in loaded]
        result.rss_mb.update(relay_start=relay_mb[0], relay_peak=max(relay_mb), relay_end=relay_mb[-1])


# Reuse hook: bench.peer_connect measures its peer over the same window, the same way.
fill_window = _fill_window


# uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the profile gets written.
_PROFILED_WORKER = """
import cProfile, signal, sys
def _exit(*_):
    raise SystemExit(0)
signal.signal(signal.SIGTERM, _exit)
from workers.stock_worker.main import main
profiler = cProfile.Profile()
try:
    profiler.runcall(main)
except SystemExit:
    pass
finally:
    profiler.dump_stats(sys.argv[1])
"""


# An experiment, not the product: the same worker with the cyclic GC tuned after the imports (--gc-tuned).
_GC_TUNED_WORKER = """
import gc, sys
from workers.stock_worker.main import main
gc.collect()
gc.freeze()  # the import-time heap is never scanned again
gc.set_threshold(int(sys.argv[1]), 20, 20)
main()
"""


def start_worker(
    args: argparse.Namespace, port: int, log_dir: Path, env: dict[str, str]
) -> processes.Process:
    """The Procfile's stock_worker; with --profile-worker the same module under cProfile (slower), with
    --gc-tuned the same module after gc.freeze() and a larger gen-0 threshold."""
    if args.profile_worker:
        argv = ["-c", _PROFILED_WORKER, f"{args.profile_worker}.{port}"]
    elif args.gc_tuned:
        argv = ["-c", _GC_TUNED_WORKER, str(args.gc_tuned)]
    else:
        return processes.start("stock_worker", port, log_dir, env)
    log = log_dir / "stock_worker.log"
    popen = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return processes.Process("stock_worker", port, popen, log)


def start_naive(group: str, stats_path: Path, log_dir: Path) -> processes.Process:
    log = log_dir / "naive_worker.log"
    popen = subprocess.Popen(
        [sys.executable, "-m", "bench.naive_worker", "--group", group, "--stats", str(stats_path)],
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return processes.Process("naive_worker", 0, popen, log)


def _read_json(path: Path) -> dict[str, Any]:
    text = path.read_text()
    return json.loads(text) if text else {}


def merge_metrics(
    scrapes: list[dict[tuple[str, frozenset[tuple[str, str]]], float]],
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Counters and histogram buckets of several worker processes, added up."""
    merged: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for scrape in scrapes:
        for key, value in scrape.items():
            merged[key] = merged.get(key, 0.0) + value
    return merged


async def batched_phase(
    args: argparse.Namespace, settings: Settings, stack: StackProcs, log_dir: Path
) -> PhaseResult:
    name = "stock_worker (batched)" if args.workers == 1 else f"{args.workers} x stock_worker (batched)"
    result = await prepare(
        settings,
        args.commands,
        args.skus,
        args.seed,
        args.bad_per_mille,
        args.reject_per_mille,
        name,
        args.locations,
    )
    group = f"bench-{uuid.uuid4().hex[:12]}"
    env = {"INVMON_STOCK_CONSUMER_GROUP": group}
    if args.max_records:
        env["INVMON_WORKER_MAX_RECORDS"] = str(args.max_records)
    if args.batch_timeout_ms is not None:
        env["INVMON_WORKER_BATCH_TIMEOUT_MS"] = str(args.batch_timeout_ms)
    result.checks["consumer_group"] = group
    result.checks["env"] = env
    result.checks["workers"] = args.workers
    result.load_before = os.getloadavg()
    ports = [settings.stock_worker_port + i for i in range(args.workers)]
    relay = processes.start("outbox_relay", settings.outbox_relay_port, log_dir) if args.with_relay else None
    procs = [
        start_worker(args, port, log_dir, {**env, "INVMON_STOCK_WORKER_PORT": str(port)}) for port in ports
    ]
    last_metrics: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:

            async def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
                try:
                    responses = await asyncio.gather(
                        *(client.get(f"http://127.0.0.1:{port}/metrics") for port in ports)
                    )
                except httpx.HTTPError:
                    return None
                return merge_metrics([parse_metrics(r.text) for r in responses])

            async def progress() -> tuple[float, float] | None:
                nonlocal last_metrics
                metrics = await scrape()
                if metrics is None:
                    return None
                last_metrics = metrics
                # Duplicates are not progress (a rebalance can redeliver): applied + rejected only.
                done = sum(
                    counter(metrics, "invmon_commands_total", outcome=o) for o in ("applied", "rejected")
                )
                return done, counter(metrics, "invmon_dead_letters_total")

            samples, first, last = await sample_until(
                procs, stack, progress, result.commands, result.bad, args.timeout, relay
            )
            _fill_window(result, samples, first, last)
            # Idle a little: does the memory come back, does it keep growing?
            await asyncio.sleep(3.0)
            result.rss_mb["idle_3s_after"] = max(
                psutil.Process(p.popen.pid).memory_info().rss / 2**20 for p in procs
            )
            last_metrics = await scrape() or last_metrics
        result.load_after = os.getloadavg()
    finally:
        result.checks["worker_exit_codes"] = [p.stop() for p in procs]
        if relay is not None:
            result.checks["relay_exit_code"] = relay.stop()
    dsn = load.asyncpg_dsn(settings.database_url)
    sizes = histogram(last_metrics, "batch_records")
    apply = histogram(last_metrics, "batch_apply_seconds")
    if sizes is not None:
        result.batch["histogram"] = sizes.name  # type: ignore[assignment]
        result.batch["mean_records_per_batch"] = sizes.mean
        result.batch["batches"] = sizes.count
    if apply is not None:
        p50, over50 = apply.quantile(0.50)
        p99, over99 = apply.quantile(0.99)
        result.latency_ms.update(
            histogram=apply.name,
            batch_apply_p50=1e3 * p50,
            batch_apply_p99=1e3 * p99,
            batch_apply_p99_beyond_last_bucket=over99 or over50,
            batch_apply_mean=1e3 * apply.mean,
        )
    batches = await db_batches(dsn)
    rows = [n for _, n in batches]
    # With one worker consecutive transactions are consecutive batches; with more they interleave.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(batches)] if args.workers == 1 else []
    if rows:
        result.batch.update(
            db_transactions=len(rows),
            db_rows_per_txn_mean=statistics.fmean(rows),
            db_rows_per_txn_p50=percentile([float(r) for r in rows], 0.5),
            db_rows_per_txn_max=max(rows),
        )
    if gaps:
        result.latency_ms.update(
            txn_cycle_p50=1e3 * percentile(gaps, 0.5),
            txn_cycle_p99=1e3 * percentile(gaps, 0.99),
            txn_cycle_max=1e3 * max(gaps),
        )
    if len(batches) > 1:
        span = batches[-1][0] - batches[0][0]
        result.db_rate = (sum(rows) - rows[-1]) / span if span > 0 else float("nan")
    result.checks.update(await db_check(dsn))
    result.checks["dlq_records"] = await load.topic_end_total(
        settings.kafka_bootstrap, STOCK_COMMANDS_DLQ.name
    )
    result.checks["consumer_lag_after_stop"] = await load.group_lag(
        settings.kafka_bootstrap, group, STOCK_COMMANDS.name
    )
    result.checks["metric_outcomes"] = {
        o: counter(last_metrics, "invmon_commands_total", outcome=o)
        for o in ("applied", "rejected", "duplicate")
    }
    result.checks["batch_retries"] = counter(last_metrics, "invmon_batch_retries_total")
    return result


async def naive_phase(
    args: argparse.Namespace, settings: Settings, stack: StackProcs, log_dir: Path
) -> PhaseResult:
    result = await prepare(
        settings,
        args.naive_commands,
        args.skus,
        args.seed + 1,
        args.bad_per_mille,
        args.reject_per_mille,
        "naive (1 txn/message)",
        args.locations,
    )
    group = f"bench-naive-{uuid.uuid4().hex[:12]}"
    stats_path = Path(tempfile.mkstemp(prefix="naive-", suffix=".json", dir=log_dir)[1])
    result.checks["consumer_group"] = group
    result.load_before = os.getloadavg()
    proc = start_naive(group, stats_path, log_dir)
    popen = proc.popen
    relay = processes.start("outbox_relay", settings.outbox_relay_port, log_dir) if args.with_relay else None
    dsn = load.asyncpg_dsn(settings.database_url)
    conn = await asyncpg.connect(dsn)
    try:

        async def progress() -> tuple[float, float]:
            # Dead letters leave no row; counted from the stats file at the end.
            return float(await db_progress(conn)), float(result.bad)

        samples, first, last = await sample_until(
            [proc], stack, progress, result.commands, result.bad, args.timeout, relay
        )
        _fill_window(result, samples, first, last)
        await asyncio.sleep(3.0)
        result.rss_mb["idle_3s_after"] = psutil.Process(popen.pid).memory_info().rss / 2**20
        result.load_after = os.getloadavg()
    finally:
        await conn.close()
        result.checks["worker_exit_codes"] = [proc.stop()]
        if relay is not None:
            result.checks["relay_exit_code"] = relay.stop()
    stats = _read_json(stats_path)
    if stats:
        result.latency_ms.update(
            message_p50=1e3 * percentile(stats["message_s"], 0.5),
            message_p99=1e3 * percentile(stats["message_s"], 0.99),
            apply_txn_p50=1e3 * percentile(stats["apply_s"], 0.5),
            apply_txn_p99=1e3 * percentile(stats["apply_s"], 0.99),
        )
        result.checks["naive_counts"] = stats["counts"]
    result.batch = {"mean_records_per_batch": 1.0}
    result.checks.update(await db_check(dsn))
    result.checks["dlq_records"] = await load.topic_end_total(
        settings.kafka_bootstrap, STOCK_COMMANDS_DLQ.name
    )
    result.checks["consumer_lag_after_stop"] = await load.group_lag(
        settings.kafka_bootstrap, group, STOCK_COMMANDS.name
    )
    return result


async def floor_phase(
    args: argparse.Namespace, settings: Settings, stack: StackProcs, batched: PhaseResult
) -> floor_bench.FloorResult:
    """The rows the batched phase wrote, written again straight from arrays (bench/floor.py)."""
    dsn = load.asyncpg_dsn(settings.database_url)
    result = await floor_bench.run(dsn, lambda: _tree_cpu(stack.postgres), args.floor_write)
    if result.commands != batched.checks.get("processed"):
        raise RuntimeError(f"floor: {result.commands} commands, the run processed {batched.checks}")
    return result


def _pipeline_us(p: PhaseResult) -> dict[str, float]:
    n = max(1.0, p.window_commands)
    return {
        "worker": 1e6 * p.worker_cpu_s / n,
        "PostgreSQL": 1e6 * p.pg_cpu_s / n,
        "Kafka": 1e6 * p.kafka_cpu_s / n,
    }


# --------------------------------------------------------------------------------------------- report


def _f(value: Any, fmt: str = "{:,.0f}") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return fmt.format(value)


def _ms(value: Any) -> str:
    return _f(value, "{:.1f}")


def _share(p: PhaseResult, cpu_s: float) -> str:
    """'cores busy, us CPU per command' over the measured window."""
    if not p.window_s:
        return "-"
    return f"{cpu_s / p.window_s:.2f}, {1e6 * cpu_s / max(1.0, p.window_commands):,.1f}"


def _db_txns(p: PhaseResult) -> str:
    if "db_transactions" not in p.batch:
        return "1 per command"
    b = p.batch
    return (
        f"{_f(b.get('db_transactions'))} / {_f(b.get('db_rows_per_txn_mean'))},"
        f" {_f(b.get('db_rows_per_txn_p50'))}, {_f(b.get('db_rows_per_txn_max'))}"
    )


def _apply_latency(p: PhaseResult) -> str:
    lat = p.latency_ms
    if "batch_apply_p50" in lat:
        beyond = " (p99 beyond last bucket)" if lat.get("batch_apply_p99_beyond_last_bucket") else ""
        return f"{_ms(lat['batch_apply_p50'])} / {_ms(lat['batch_apply_p99'])} per batch{beyond}"
    return f"{_f(lat.get('apply_txn_p50'), '{:.2f}')} / {_f(lat.get('apply_txn_p99'), '{:.2f}')} per txn"


def _cycle_latency(p: PhaseResult) -> str:
    lat = p.latency_ms
    if "txn_cycle_p50" in lat:
        return f"{_ms(lat['txn_cycle_p50'])} / {_ms(lat['txn_cycle_p99'])} per batch"
    if "batch_apply_p50" in lat:
        return "- (several workers interleave)"
    return f"{_f(lat.get('message_p50'), '{:.2f}')} / {_f(lat.get('message_p99'), '{:.2f}')} per message"


def _other_cpu(p: PhaseResult) -> str:
    ours = p.worker_cpu_s + p.pg_cpu_s + p.kafka_cpu_s + p.relay_cpu_s
    return f"{(p.system_busy_s - ours) / p.window_s:.2f}" if p.window_s else "-"


def _rss(p: PhaseResult, keys: tuple[str, ...]) -> str:
    return "/".join(_f(p.rss_mb.get(k)) for k in keys)


def _rows(p: PhaseResult, meta: dict[str, Any], relay: bool) -> list[tuple[str, str]]:
    rows = [
        ("valid commands / dead-lettered", f"{p.commands:,} / {p.bad:,}"),
        (
            "publish before start (s, records/s)",
            f"{p.publish_s:.1f}, {(p.commands + p.bad) / p.publish_s:,.0f}",
        ),
        ("measured window (s)", f"{p.window_s:.2f}"),
        ("commands in window", _f(p.window_commands)),
        ("THROUGHPUT commands/s", _f(p.rate)),
        ("  cross-check: DB applied_at span", _f(p.db_rate)),
        ("mean batch (records, from /metrics)", _f(p.batch.get("mean_records_per_batch"), "{:,.1f}")),
        ("DB txns / rows per txn: mean, p50, max", _db_txns(p)),
        ("apply p50 / p99 (ms) [1]", _apply_latency(p)),
        ("cycle p50 / p99 (ms) [2]", _cycle_latency(p)),
        ("worker CPU per command (us)", _f(p.cpu_us_per_command, "{:,.1f}")),
        ("worker CPU (cores busy)", _f(p.worker_cpu_s / p.window_s if p.window_s else None, "{:.2f}")),
        ("postgres CPU (cores busy, us/cmd)", _share(p, p.pg_cpu_s)),
        ("kafka CPU (cores busy, us/cmd)", _share(p, p.kafka_cpu_s)),
    ]
    if relay:
        rows += [
            ("outbox relay CPU (cores busy, us/cmd)", _share(p, p.relay_cpu_s)),
            ("outbox relay RSS MB start/peak/end", _rss(p, ("relay_start", "relay_peak", "relay_end"))),
        ]
    keys = ("at_start_of_window", "peak_under_load", "end_of_window", "idle_3s_after")
    growth = p.rss_mb.get("median_4th_quarter", 0.0) - p.rss_mb.get("median_2nd_quarter", 0.0)
    rows += [
        (
            "whole machine busy (cores)",
            f"{p.system_busy_s / p.window_s:.2f} of {meta['cpus']}" if p.window_s else "-",
        ),
        ("  of which not ours (other users, driver)", _other_cpu(p)),
        ("worker RSS MB start/peak/end/idle", _rss(p, keys)),
        ("  RSS growth, 2nd -> 4th quarter (MB)", f"{growth:+.1f}"),
        (
            "applied / rejected (expected rejections)",
            f"{p.checks.get('applied', 0):,} / {p.checks.get('rejected', 0):,} ({p.expected_rejections:,})",
        ),
        ("ledger rows / outbox rows", f"{p.checks.get('ledger', 0):,} / {p.checks.get('outbox', 0):,}"),
        (
            "DLQ records / consumer lag after stop",
            f"{p.checks.get('dlq_records')} / {p.checks.get('consumer_lag_after_stop')}",
        ),
    ]
    return rows


def _verdicts(batched: PhaseResult | None, naive: PhaseResult | None, meta: dict[str, Any]) -> list[str]:
    out = []
    if batched is not None:
        met = "MET" if batched.rate >= TARGET_PER_S else "NOT MET"
        out.append(f"  target >= {TARGET_PER_S:,} commands/s: {met} ({batched.rate:,.0f}/s)")
    if batched is not None and naive is not None:
        ratio = batched.rate / naive.rate
        met = "MET" if ratio >= TARGET_RATIO else "NOT MET"
        out.append(f"  batched / naive: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x: {met})")
    for p in (x for x in (batched, naive) if x is not None):
        peak = max(p.rss_mb.get("peak_under_load", 0.0), p.rss_mb.get("idle_3s_after", 0.0))
        ok = "ok" if peak < RSS_LIMIT_MB else "OVER"
        out.append(f"  {p.name}: peak RSS {peak:.0f} MB (limit {RSS_LIMIT_MB:.0f} MB: {ok})")
        if "relay_peak" in p.rss_mb:
            relay_ok = "ok" if p.rss_mb["relay_peak"] < RSS_LIMIT_MB else "OVER"
            out.append(
                f"  outbox relay during {p.name}: peak RSS {p.rss_mb['relay_peak']:.0f} MB ({relay_ok})"
            )
        # The DLQ is at-least-once: a batch redelivered after a rebalance dead-letters its bad records again.
        exact = (
            p.checks.get("processed") == p.commands
            and p.checks.get("rejected") == p.expected_rejections
            and (p.checks.get("dlq_records") or 0) >= p.bad
            and p.checks.get("consumer_lag_after_stop") == 0
        )
        out.append(
            f"  {p.name}: each command processed exactly once, rejections as expected, bad records on the"
            f" DLQ, lag 0 after stop: {'yes' if exact else 'NO ' + str(p.checks)}"
        )
    out.append(
        f"  bench driver (this process) peak RSS: {meta['driver_peak_rss_mb']:.0f} MB (holds the load)"
    )
    return out


NOTES = """\
  [1] batched: invmon_batch_apply_seconds (decode, dead letters, transaction, offset commit), p50/p99
      interpolated linearly inside its buckets (0.05, 0.1, 0.25, 0.5, 1 s ...), so coarse; naive: one
      apply_batch transaction, measured exactly in the naive worker.
  [2] batched: gap between consecutive transactions' applied_at (the batch's clock reading), i.e. fetch +
      decode + transaction + commit of one batch, exact; naive: one message incl. its offset commit.
  Throughput: applied + rejected from the workers' /metrics (counted after the offset commit), or
  processed_commands rows for the naive worker, between the first sample showing progress and the one
  showing all commands; sampled every 100 ms. CPU: psutil user+sys of the processes over that window."""


def report(
    args: argparse.Namespace, batched: PhaseResult | None, naive: PhaseResult | None, meta: dict[str, Any]
) -> str:
    phases = [p for p in (batched, naive) if p is not None]
    columns = [_rows(p, meta, args.with_relay) for p in phases]
    labels = [label for label, _ in columns[0]] if columns else []
    table = [("", *[p.name for p in phases])]
    table += [(label, *[col[i][1] for col in columns]) for i, label in enumerate(labels)]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    fmt = "  " + "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [
        "stock command throughput: Kafka -> stock worker -> PostgreSQL",
        f"  host: {meta['cpus']} CPUs, {meta['python']}; stack {meta['stack_dir']}"
        f" (profile {meta['stack_profile']}); {meta['partitions']} partitions; {meta['skus']:,} SKUs",
        f"  load average (1/5/15 min) before / after: {meta['load_before']} / {meta['load_after']}",
        f"  command: {meta['command']}",
        "",
        fmt.format(*table[0]),
        "  " + "  ".join("-" * w for w in widths),
        *(fmt.format(*r) for r in table[1:]),
        "",
        *_verdicts(batched, naive, meta),
        "",
        NOTES,
    ]
    return "\n".join(line.rstrip() for line in lines)


# --------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    stack_dir = str(settings.stack_dir)
    if stacks.default_stack(stack_dir) and not args.force:
        print(f"refusing to wipe topics/tables of stack {stack_dir!r}: set INVMON_STACK_DIR (or --force)")
        return 2
    stack = StackProcs.load(settings)
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="invmon-bench-"))
    meta: dict[str, Any] = {
        "cpus": psutil.cpu_count(),
        "python": f"Python {platform.python_version()}",
        "stack_dir": stack_dir,
        "stack_profile": settings.stack_profile,
        "partitions": settings.kafka_partitions,
        "skus": args.skus,
        "locations": args.locations,
        "command": " ".join(["python -m bench.stock_throughput", *sys.argv[1:]]),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "log_dir": str(log_dir),
    }
    print(f"logs in {log_dir}", flush=True)
    batched = naive = None
    floor: floor_bench.FloorResult | None = None
    if args.commands:
        print(f"batched phase: {args.commands:,} commands over {args.skus:,} SKUs ...", flush=True)
        batched = await batched_phase(args, settings, stack, log_dir)
        print(f"  {batched.rate:,.0f} commands/s", flush=True)
        if args.floor:
            print("floor phase: the same rows written straight ...", flush=True)
            floor = await floor_phase(args, settings, stack, batched)
    if args.naive_commands:
        print(f"naive phase: {args.naive_commands:,} commands ...", flush=True)
        naive = await naive_phase(args, settings, stack, log_dir)
        print(f"  {naive.rate:,.0f} commands/s", flush=True)
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["driver_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(report(args, batched, naive, meta))
    if floor is not None and batched is not None:
        print("\n".join(["", *floor_bench.report_lines(floor, _pipeline_us(batched))]))
    if args.json:

        def dump(p: PhaseResult | None) -> dict[str, Any] | None:
            if p is None:
                return None
            out = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
            out["rate"] = p.rate
            out["cpu_us_per_command"] = p.cpu_us_per_command
            return out

        figures: dict[str, Any] = {"meta": meta, "batched": dump(batched), "naive": dump(naive)}
        if floor is not None and batched is not None:
            figures["floor"] = dataclasses.asdict(floor) | {"total_us": floor.total_us}
            figures["floor_multiple"] = sum(_pipeline_us(batched).values()) / floor.total_us
        if batched and naive:
            figures["ratio"] = batched.rate / naive.rate
        _write_json(Path(args.json), figures)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--commands", type=int, default=200_000, help="commands for the real worker (0: skip)"
    )
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument(
        "--naive-commands", type=int, default=5_000, help="commands for the naive worker (0: skip)"
    )
    parser.add_argument(
        "--bad-per-mille", type=float, default=1.0, help="records that must be dead-lettered, per 1000"
    )
    parser.add_argument(
        "--reject-per-mille", type=float, default=10.0, help="commands the rules must reject, per 1000"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--locations",
        type=int,
        default=0,
        help="spread the commands over this many locations of their own (0: no location field)",
    )
    parser.add_argument(
        "--with-relay", action="store_true", help="also run the outbox relay (competes for the same CPUs)"
    )
    parser.add_argument("--workers", type=int, default=1, help="stock worker processes in the group")
    parser.add_argument("--max-records", type=int, help="override INVMON_WORKER_MAX_RECORDS for the worker")
    parser.add_argument("--batch-timeout-ms", type=int, help="override INVMON_WORKER_BATCH_TIMEOUT_MS")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="give up a phase after this many seconds"
    )
    parser.add_argument(
        "--profile-worker",
        help="run the worker under cProfile, stats to PATH.<port> (figures then include its overhead)",
    )
    parser.add_argument(
        "--gc-tuned",
        type=int,
        metavar="GEN0",
        help="experiment: run the worker after gc.freeze() with gen-0 threshold GEN0 (e.g. 20000)",
    )
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the batched phase, write the same rows straight from arrays and compare (bench/floor.py)",
    )
    parser.add_argument(
        "--floor-write", choices=("copy", "unnest"), default="copy", help="how the floor inserts its rows"
    )
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--log-dir", help="worker logs go here (default: a new temp dir)")
    parser.add_argument(
        "--force", action="store_true", help="allow the default .stack/.stack-test stack dirs"
    )
    stacks.add_profile_arguments(parser)
    args = parser.parse_args()
    stacks.run_profiles_if_asked("bench.stock_throughput", args, PROFILE_FIGURES)
    if args.log_dir:
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(run(args)))


def _per_command_us(cpu_s: str) -> stacks.Figure:
    return lambda r: 1e6 * r["batched"][cpu_s] / r["batched"]["window_commands"]


# What --profiles compares between the stacks (each from one run's --json figures).
PROFILE_FIGURES: dict[str, stacks.Figure] = {
    "commands/s": lambda r: r["batched"]["rate"],
    "worker CPU us/command": _per_command_us("worker_cpu_s"),
    "PostgreSQL CPU us/command": _per_command_us("pg_cpu_s"),
    "Kafka CPU us/command": _per_command_us("kafka_cpu_s"),
    "batch cycle p99 ms": lambda r: r["batched"]["latency_ms"]["txn_cycle_p99"],
    "x the floor": lambda r: r.get("floor_multiple", float("nan")),
}


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    path.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
