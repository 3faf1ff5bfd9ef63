"""The peer a user would pick instead (Kafka Connect + the Debezium JDBC sink), beside the stock worker.

    python -m bench.peer_connect [--records 100000] [--skus 2000] [--rounds 2] [--workers 1,2] [--tasks 1]
                                 [--json out.json] [--force]

What one run does, on YOUR OWN stack (INVMON_STACK_DIR and its ports; it recreates its own topic, drops and
creates its own table, and each stock round wipes the stock topics and tables; it refuses the default
`.stack` / `.stack-test` stack dirs unless --force):

1. fetch, once: Kafka Connect at the stack's Kafka version (settings.kafka_version) with the log4j2 binding
   of the broker's own log4j-core, and debezium-connector-jdbc with the PostgreSQL driver, from Maven
   Central into `.bench-cache/peer-connect/` (bench/peer/*.pom.xml, bench/peer/settings.xml). What Central
   refuses is printed and the run exits 1; nothing is substituted.
2. backlog, once: bench.stock_throughput's generator (same SKUs, mix, keys and partition count); each
   command becomes one Connect schema-JSON record (struct key {sku}, the command's fields as the value)
   on the topic `bench.peer.commands`; records the stock worker would dead-letter are left out (the peer
   has no dead letters; their count is printed).
3. rounds, alternating: the peer (table truncated, a fresh connector name = a fresh consumer group and a
   fresh offsets file, ConnectStandalone started on the published backlog, tasks.max=--tasks, batch 500,
   upsert on the record key), then `bench.stock_throughput --workers N --naive-commands 0` as a child
   process for each N in --workers. The peer's window runs from the first sample showing a row to the
   one showing every record applied; CPU (psutil user+sys) of the Connect JVM, PostgreSQL (postmaster and
   backends) and Kafka over that window, sampled every 100 ms as bench.stock_throughput does.
4. a table per round, the medians, and issue 20's peer ratios.

Progress without a counter in the peer: each value carries its partition and its index within that
partition (computed with the producer's own partitioner). Rows are upserted in partition order, so the
row holding a partition's highest index was written by the last record applied from it, and
sum(max(index) + 1) over partitions is the number of records applied.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from aiokafka.partitioner import murmur2

from bench import load, stacks
from bench.stock_throughput import PhaseResult, StackProcs, fill_window, sample_until
from contracts.topics import Topic
from infra.settings import Settings, get_settings
from invmon.stack.paths import StackPaths
from invmon.stack.system import java_bin
from tests import processes

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = Path(__file__).resolve().parent / "peer"
CACHE = ROOT / ".bench-cache" / "peer-connect"
DEBEZIUM_VERSION = "3.6.0.Final"  # the newest debezium-connector-jdbc Central serves here
HIBERNATE_VERSION = "7.2.19.Final"  # hibernate-agroal 7.2.6.Final (what 3.6.0 names) is not served
POSTGRES_DRIVER_VERSION = "42.7.8"
TOPIC = Topic("bench.peer.commands", "bench.peer_connect's backlog: Connect schema-JSON stock commands.")
TABLE = "bench_peer_stock"
BATCH = 500
# The runtime brings its own; the plugin's copies clash with it (Jackson kills the task at start).
PLUGIN_JARS_REMOVED = ("jackson-", "kafka-clients-", "connect-api-", "slf4j-api-")
RATE_TARGET = 1.0  # issue 20: two stock workers apply >= the peer's records/s
CPU_TARGET = 1.0  # issue 20: stock CPU per command <= the peer's per record
COMPLETE = ".complete"


# --------------------------------------------------------------------------------------------- records

KEY_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "name": "bench.peer.Key",
    "optional": False,
    "fields": [{"field": "sku", "type": "string", "optional": False}],
}
# The key's sku is the primary key column; a value field of the same name would be a second one.
VALUE_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "name": "bench.peer.StockCommand",
    "optional": False,
    "fields": [
        {"field": "command_type", "type": "string", "optional": False},
        {"field": "quantity", "type": "int32", "optional": True},
        {"field": "delta", "type": "int32", "optional": True},
        {"field": "reservation_id", "type": "string", "optional": True},
        {"field": "reason_code", "type": "string", "optional": True},
        {"field": "command_id", "type": "string", "optional": False},
        {
            "field": "issued_at",
            "type": "int64",
            "name": "org.apache.kafka.connect.data.Timestamp",
            "version": 1,
            "optional": False,
        },
        {"field": "kafka_partition", "type": "int32", "optional": False},
        {"field": "partition_seq", "type": "int64", "optional": False},
    ],
}
TABLE_DDL = f"""
CREATE TABLE {TABLE} (
    sku text PRIMARY KEY,
    command_type text NOT NULL,
    quantity integer,
    delta integer,
    reservation_id text,
    reason_code text,
    command_id text NOT NULL,
    issued_at timestamp NOT NULL,
    kafka_partition integer NOT NULL,
    partition_seq bigint NOT NULL
)"""
PROGRESS_SQL = (
    f"SELECT coalesce(sum(m + 1), 0) FROM (SELECT max(partition_seq) AS m FROM {TABLE}"
    " GROUP BY kafka_partition) s"
)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the producer's default partitioner (Java's and aiokafka's murmur2) gives `key`."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def command_fields(key: bytes, value: bytes) -> dict[str, Any] | None:
    """The value columns of one stock command record; None for what the stock worker dead-letters."""
    try:
        body = json.loads(value)
        sku, kind, command_id = body["sku"], body["type"], body["command_id"]
        issued = datetime.fromisoformat(body["issued_at"])
    except (ValueError, KeyError, TypeError):
        return None
    if sku.encode() != key or issued.tzinfo is None:
        return None
    if kind not in ("receive_stock", "adjust_stock", "reserve_stock", "release_reservation"):
        return None
    if kind in ("receive_stock", "reserve_stock") and not isinstance(body.get("quantity"), int):
        return None
    if kind == "adjust_stock" and not isinstance(body.get("delta"), int):
        return None
    return {
        "command_type": kind,
        "quantity": body.get("quantity"),
        "delta": body.get("delta"),
        "reservation_id": body.get("reservation_id"),
        "reason_code": body.get("reason_code"),
        "command_id": str(command_id),
        "issued_at": round(issued.timestamp() * 1000),
    }


def peer_records(
    records: Sequence[tuple[bytes, bytes]], partitions: int
) -> tuple[list[tuple[bytes, bytes]], int]:
    """Connect schema-JSON (key, value) records for the valid commands, and how many were left out."""
    seq = [0] * partitions
    out: list[tuple[bytes, bytes]] = []
    for key, value in records:
        fields = command_fields(key, value)
        if fields is None:
            continue
        partition = partition_of(key, partitions)
        fields.update(kafka_partition=partition, partition_seq=seq[partition])
        seq[partition] += 1
        encoded_key = {"schema": KEY_SCHEMA, "payload": {"sku": key.decode()}}
        encoded_value = {"schema": VALUE_SCHEMA, "payload": fields}
        out.append(
            (
                json.dumps(encoded_key, separators=(",", ":")).encode(),
                json.dumps(encoded_value, separators=(",", ":")).encode(),
            )
        )
    return out, len(records) - len(out)


# --------------------------------------------------------------------------------------------- ratios


@dataclass(frozen=True, slots=True)
class Figures:
    """One round of one system: throughput and CPU per record (us) of its consumer, PostgreSQL, Kafka."""

    rate: float
    consumer_us: float
    pg_us: float
    kafka_us: float

    @property
    def total_us(self) -> float:
        return self.consumer_us + self.pg_us + self.kafka_us


def median_figures(rounds: Sequence[Figures]) -> Figures:
    return Figures(
        statistics.median(r.rate for r in rounds),
        statistics.median(r.consumer_us for r in rounds),
        statistics.median(r.pg_us for r in rounds),
        statistics.median(r.kafka_us for r in rounds),
    )


def peer_ratios(peer: Sequence[Figures], stock: Mapping[int, Sequence[Figures]]) -> dict[str, Any]:
    """Issue 20's comparison on the medians: stock (2 workers, else the most) against the peer."""
    if not peer or not stock:
        return {}
    workers = 2 if 2 in stock else max(stock)
    p, s = median_figures(peer), median_figures(stock[workers])
    rate = s.rate / p.rate
    cpu = s.total_us / p.total_us
    return {
        "stock_workers": workers,
        "rate_ratio": rate,
        "rate_target_met": rate >= RATE_TARGET,
        "cpu_ratio": cpu,
        "cpu_target_met": cpu <= CPU_TARGET,
    }


# --------------------------------------------------------------------------------------------- fetch


@dataclass(frozen=True, slots=True)
class PeerDist:
    runtime: Path  # Connect's jars, the JVM's classpath
    plugins: Path  # plugin.path: one folder per plugin

    @property
    def classpath(self) -> str:
        return f"{self.runtime}/*"


class CentralRefused(RuntimeError):
    pass


def _render(template: str, **values: str) -> str:
    text = (PEER_DIR / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def _mvn(pom: Path, goal: list[str]) -> None:
    command = [
        "mvn",
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-s",
        str(PEER_DIR / "settings.xml"),
        "-f",
        str(pom),
        *goal,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1200)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        # Maven's first [ERROR] line names the artifact; the rest is its advice on -e / -X.
        errors = [
            line.split(" -> [Help", 1)[0]
            for line in output.splitlines()
            if "[ERROR]" in line and ("Could not" in line or "Failed" in line)
        ]
        raise CentralRefused("\n".join(errors[:5]) or output[-3000:])


def _fetch_into(target: Path, name: str, pom_text: str, goal_extra: list[str]) -> None:
    """Resolve the POM's runtime jars into `target` (replaced whole; marked complete last)."""
    work = CACHE / "maven" / name  # outside plugin.path, which Connect scans
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    pom.write_text(pom_text)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    _mvn(
        pom,
        [
            *goal_extra,
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def broker_log4j_version(settings: Settings) -> str:
    """The log4j-core version of the stack's broker: Connect logs through the same binding."""
    stack_dir = settings.stack_dir if settings.stack_dir.is_absolute() else ROOT / settings.stack_dir
    libs = StackPaths(stack_dir.resolve()).kafka_libs(settings.kafka_version)
    cores = sorted(libs.glob("log4j-core-*.jar"))
    if len(cores) != 1:
        raise SystemExit(f"expected one log4j-core jar among the broker's jars in {libs}, found {cores}")
    return cores[0].name.removeprefix("log4j-core-").removesuffix(".jar")


def fetch(settings: Settings) -> tuple[PeerDist, str]:
    """Connect and the JDBC sink in the cache, downloading only what is missing. (dist, outcome text)"""
    runtime = CACHE / f"connect-{settings.kafka_version}" / "libs"
    plugin_root = CACHE / f"debezium-jdbc-{DEBEZIUM_VERSION}" / "plugins"
    plugin = plugin_root / "debezium-connector-jdbc"
    fetched = []
    if not (runtime / COMPLETE).exists():
        log4j = broker_log4j_version(settings)
        pom = _render("connect-runtime.pom.xml", KAFKA_VERSION=settings.kafka_version)
        _fetch_into(runtime, runtime.parent.name, pom, ["-Plog4j2-binding", f"-Dlog4j.version={log4j}"])
        (runtime / COMPLETE).write_text(f"kafka {settings.kafka_version}, log4j {log4j}\n")
        fetched.append(f"Connect {settings.kafka_version}")
    if not (plugin / COMPLETE).exists():
        pom = _render(
            "jdbc-sink.pom.xml",
            DEBEZIUM_VERSION=DEBEZIUM_VERSION,
            HIBERNATE_VERSION=HIBERNATE_VERSION,
            POSTGRES_DRIVER_VERSION=POSTGRES_DRIVER_VERSION,
        )
        plugin_root.mkdir(parents=True, exist_ok=True)
        _fetch_into(plugin, plugin_root.parent.name, pom, [])
        removed = [p for p in plugin.glob("*.jar") if p.name.startswith(PLUGIN_JARS_REMOVED)]
        for jar in removed:
            jar.unlink()
        (plugin / COMPLETE).write_text(f"removed {sorted(p.name for p in removed)}\n")
        fetched.append(f"debezium-connector-jdbc {DEBEZIUM_VERSION}")
    outcome = f"fetched {', '.join(fetched)}" if fetched else "cached"
    return PeerDist(runtime, plugin_root), outcome


# --------------------------------------------------------------------------------------------- one peer round


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _properties(values: Mapping[str, object]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


def connect_files(
    settings: Settings, dist: PeerDist, round_dir: Path, name: str, tasks: int
) -> tuple[Path, Path]:
    """worker.properties and connector.properties of one round (offsets file fresh in round_dir)."""
    db = settings.database_url.split("://", 1)[1]
    credentials, _, location = db.rpartition("@")
    user, _, password = credentials.partition(":")
    worker = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
        "offset.storage.file.filename": round_dir / "connect.offsets",
        "offset.flush.interval.ms": 10_000,  # connect-standalone.properties' own setting
        "plugin.path": dist.plugins,
        "plugin.discovery": "service_load",  # Connect's own advice here: every plugin has a manifest
        "listeners": f"http://127.0.0.1:{_free_port()}",
    }
    connector = {
        "name": name,
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": tasks,
        "topics": TOPIC.name,
        "connection.url": f"jdbc:postgresql://{location}?reWriteBatchedInserts=true",
        "connection.username": user,
        "connection.password": password,
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "primary.key.fields": "sku",
        "schema.evolution": "none",
        "collection.name.format": TABLE,
        "batch.size": BATCH,
        # reWriteBatchedInserts fails on a key repeated inside one batch without it.
        "use.reduction.buffer": "true",
    }
    worker_path, connector_path = round_dir / "worker.properties", round_dir / "connector.properties"
    worker_path.write_text(_properties(worker))
    connector_path.write_text(_properties(connector))
    (round_dir / "log4j2.properties").write_text(_render("connect-log4j2.properties"))
    return worker_path, connector_path


def start_connect(dist: PeerDist, round_dir: Path, worker: Path, connector: Path) -> processes.Process:
    java = java_bin()
    if java is None:
        raise SystemExit("java not found (set JAVA_HOME or install a JRE 17)")
    log = round_dir / "connect.log"
    # connect-standalone.sh's heap and GC flags (kafka-run-class.sh).
    command = [
        java, "-Xms256m", "-Xmx2g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={round_dir / 'log4j2.properties'}",
        "-cp", dist.classpath, "org.apache.kafka.connect.cli.ConnectStandalone", str(worker), str(connector),
    ]  # fmt: skip
    popen = subprocess.Popen(command, cwd=round_dir, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    return processes.Process("connect", 0, popen, log)


@dataclass(slots=True)
class PeerRound:
    phase: PhaseResult
    start_to_first_row_s: float = float("nan")
    jvm_rss_mb: dict[str, float] = field(default_factory=dict)

    def figures(self) -> Figures:
        p = self.phase
        n = max(1.0, p.window_commands)
        return Figures(p.rate, 1e6 * p.worker_cpu_s / n, 1e6 * p.pg_cpu_s / n, 1e6 * p.kafka_cpu_s / n)


async def reset_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.execute(TABLE_DDL)
    finally:
        await conn.close()


async def peer_round(
    args: argparse.Namespace,
    settings: Settings,
    stack: StackProcs,
    dist: PeerDist,
    backlog: PhaseResult,
    log_dir: Path,
    index: int,
) -> PeerRound:
    dsn = load.asyncpg_dsn(settings.database_url)
    await reset_table(dsn)
    round_dir = log_dir / f"peer-{index}"
    round_dir.mkdir(parents=True)
    name = f"bench-peer-{uuid.uuid4().hex[:12]}"
    phase = PhaseResult(
        f"peer (Connect, tasks.max={args.tasks})",
        backlog.commands,
        0,
        0,
        backlog.mix,
        backlog.publish_s,
        0.0,
    )
    phase.checks["consumer_group"] = f"connect-{name}"
    phase.load_before = os.getloadavg()
    result = PeerRound(phase)
    worker, connector = connect_files(settings, dist, round_dir, name, args.tasks)
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    proc = start_connect(dist, round_dir, worker, connector)
    try:

        async def progress() -> tuple[float, float]:
            return float(await conn.fetchval(PROGRESS_SQL)), 0.0

        samples, first, last = await sample_until([proc], stack, progress, phase.commands, 0, args.timeout)
        fill_window(phase, samples, first, last)
        result.start_to_first_row_s = first.t - started
        await asyncio.sleep(3.0)  # as bench.stock_throughput: memory once idle
        phase.rss_mb["idle_3s_after"] = psutil.Process(proc.popen.pid).memory_info().rss / 2**20
        phase.load_after = os.getloadavg()
        phase.checks["rows"] = int(await conn.fetchval(f"SELECT count(*) FROM {TABLE}"))
    finally:
        await conn.close()
        phase.checks["exit_code"] = proc.stop(timeout=60.0)
    phase.checks["consumer_lag_after_stop"] = await load.group_lag(
        settings.kafka_bootstrap, f"connect-{name}", TOPIC.name
    )
    result.jvm_rss_mb = dict(phase.rss_mb)
    return result


async def publish_backlog(args: argparse.Namespace, settings: Settings) -> tuple[PhaseResult, int]:
    """The stock bench's load (same seed, SKUs, mix), as the peer's records, on the peer's own topic."""
    generated = load.generate(
        args.records, args.skus, seed=args.seed, bad_per_mille=args.bad_per_mille, reject_per_mille=10.0
    )
    records, left_out = peer_records(generated.records, settings.kafka_partitions)
    await load.reset_topics(
        settings.kafka_bootstrap, settings.kafka_partitions, settings.kafka_replication, [TOPIC]
    )
    publish_s = await load.publish(settings.kafka_bootstrap, TOPIC.name, records)
    mix = {k: v for k, v in generated.mix.items() if k != "dead_letter"}
    return PhaseResult("backlog", len(records), 0, 0, mix, publish_s, 0.0), left_out


# --------------------------------------------------------------------------------------------- stock rounds


def stock_round(args: argparse.Namespace, workers: int, log_dir: Path, index: int) -> dict[str, Any]:
    """bench.stock_throughput as a child process on the same stack; its --json figures."""
    out = log_dir / f"stock-{index}-w{workers}.json"
    command = [
        sys.executable, "-m", "bench.stock_throughput", "--commands", str(args.records),
        "--skus", str(args.skus), "--workers", str(workers), "--naive-commands", "0",
        "--seed", str(args.seed), "--bad-per-mille", str(args.bad_per_mille),
        "--json", str(out), "--log-dir", str(log_dir / f"stock-{index}-w{workers}"),
        "--timeout", str(args.timeout),
    ]  # fmt: skip
    if args.force:
        command.append("--force")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    (log_dir / f"stock-{index}-w{workers}.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"bench.stock_throughput failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def stock_figures(result: Mapping[str, Any]) -> Figures:
    b = result["batched"]
    n = max(1.0, b["window_commands"])
    return Figures(
        b["rate"], 1e6 * b["worker_cpu_s"] / n, 1e6 * b["pg_cpu_s"] / n, 1e6 * b["kafka_cpu_s"] / n
    )


# --------------------------------------------------------------------------------------------- report


def _row(label: str, f: Figures, extra: str = "") -> str:
    return (
        f"  {label:<28} {f.rate:>9,.0f} {f.consumer_us:>9.1f} {f.pg_us:>7.1f} {f.kafka_us:>7.1f}"
        f" {f.total_us:>8.1f}  {extra}"
    )


HEADER = f"  {'':<28} {'rec/s':>9} {'consumer':>9} {'PG':>7} {'Kafka':>7} {'total':>8}  (CPU us per record)"


def _cores(cpu_s: float, window_s: float) -> float:
    return cpu_s / window_s if window_s else float("nan")


def peer_extra(r: PeerRound) -> str:
    p = r.phase
    return (
        f"JVM {_cores(p.worker_cpu_s, p.window_s):.2f} cores,"
        f" RSS peak {p.rss_mb.get('peak_under_load', 0):.0f} MB,"
        f" start->first row {r.start_to_first_row_s:.1f} s, window {p.window_s:.1f} s,"
        f" lag after stop {p.checks.get('consumer_lag_after_stop')}"
    )


def stock_extra(result: Mapping[str, Any]) -> str:
    b = result["batched"]
    checks = b.get("checks", {})
    ok = checks.get("processed") == b["commands"] and checks.get("consumer_lag_after_stop") == 0
    return (
        f"workers {_cores(b['worker_cpu_s'], b['window_s']):.2f} cores, RSS peak"
        f" {b['rss_mb'].get('peak_under_load', 0):.0f} MB, window {b['window_s']:.1f} s"
        f" (cross-check, applied_at span: {b.get('db_rate', float('nan')):,.0f}/s),"
        f" exactly once + lag 0: {'yes' if ok else 'NO'}"
    )


def verdict_lines(ratios: Mapping[str, Any]) -> list[str]:
    if not ratios:
        return []
    w = ratios["stock_workers"]
    rate_met = "MET" if ratios["rate_target_met"] else "NOT MET"
    cpu_met = "MET" if ratios["cpu_target_met"] else "NOT MET"
    return [
        f"  stock commands/s ({w} workers) / peer records/s: {ratios['rate_ratio']:.2f}"
        f" (target >= {RATE_TARGET:.0f}: {rate_met})",
        f"  stock CPU per command ({w} workers; worker + PG + Kafka) / peer CPU per record:"
        f" {ratios['cpu_ratio']:.2f} (target <= {CPU_TARGET:.0f}: {cpu_met})",
    ]


# --------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    stack_dir = str(settings.stack_dir)
    if stacks.default_stack(stack_dir) and not args.force:
        print(f"refusing to wipe topics/tables of stack {stack_dir!r}: set INVMON_STACK_DIR (or --force)")
        return 2
    try:
        dist, outcome = fetch(settings)
    except CentralRefused as refused:
        print(f"Maven Central refused part of the peer; nothing was substituted:\n{refused}")
        return 1
    print(f"peer: {outcome} ({dist.runtime.parent}, {dist.plugins})", flush=True)
    stack = StackProcs.load(settings)
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="invmon-peer-"))
    print(f"logs in {log_dir}", flush=True)
    backlog, left_out = await publish_backlog(args, settings)
    print(
        f"backlog: {backlog.commands:,} records on {TOPIC.name} in {backlog.publish_s:.1f} s"
        f" ({left_out} would-be dead letters left out)",
        flush=True,
    )
    peers: list[PeerRound] = []
    stocks: dict[int, list[dict[str, Any]]] = {w: [] for w in args.workers}
    for index in range(1, args.rounds + 1):
        print(f"\nround {index}: {datetime.now().astimezone():%H:%M:%S}, load {os.getloadavg()[0]:.2f}")
        print(HEADER, flush=True)
        peer = await peer_round(args, settings, stack, dist, backlog, log_dir, index)
        peers.append(peer)
        print(_row(peer.phase.name, peer.figures(), peer_extra(peer)), flush=True)
        for workers in args.workers:
            result = stock_round(args, workers, log_dir, index)
            stocks[workers].append(result)
            print(_row(f"stock, {workers} worker(s)", stock_figures(result), stock_extra(result)), flush=True)
    peer_med = median_figures([p.figures() for p in peers])
    stock_med = {w: median_figures([stock_figures(r) for r in rs]) for w, rs in stocks.items()}
    ratios = peer_ratios(
        [p.figures() for p in peers], {w: [stock_figures(r) for r in rs] for w, rs in stocks.items()}
    )
    print(f"\nmedians over {args.rounds} round(s), stack {stack_dir} (profile {settings.stack_profile}):")
    print(HEADER)
    print(_row(peers[0].phase.name, peer_med))
    for w, f in stock_med.items():
        print(_row(f"stock, {w} worker(s)", f))
    print("\n".join(["", *verdict_lines(ratios)]))
    if args.json:
        figures = {
            "meta": {
                "command": " ".join(["python -m bench.peer_connect", *sys.argv[1:]]),
                "stack_dir": stack_dir,
                "stack_profile": settings.stack_profile,
                "kafka_version": settings.kafka_version,
                "debezium_version": DEBEZIUM_VERSION,
                "partitions": settings.kafka_partitions,
                "left_out_dead_letters": left_out,
                "log_dir": str(log_dir),
            },
            "peer_rounds": [
                {
                    **_asdict(p.phase),
                    "figures": _asdict_figures(p.figures()),
                    "start_to_first_row_s": p.start_to_first_row_s,
                }
                for p in peers
            ],
            "stock_rounds": {str(w): rs for w, rs in stocks.items()},
            "medians": {
                "peer": _asdict_figures(peer_med),
                **{f"stock_{w}": _asdict_figures(f) for w, f in stock_med.items()},
            },
            "ratios": ratios,
        }
        _write_json(Path(args.json), figures)
    await drop_table(load.asyncpg_dsn(settings.database_url))
    return 0


async def drop_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    finally:
        await conn.close()


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    path.write_text(json.dumps(figures, indent=2, default=str))


def _asdict(p: PhaseResult) -> dict[str, Any]:
    out = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
    out["rate"] = p.rate
    return out


def _asdict_figures(f: Figures) -> dict[str, float]:
    return {
        "rate": f.rate,
        "consumer_us": f.consumer_us,
        "pg_us": f.pg_us,
        "kafka_us": f.kafka_us,
        "total_us": f.total_us,
    }


def _workers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="records / commands per round")
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2, help="peer, then stock per --workers, this often")
    parser.add_argument("--workers", type=_workers, default=[1, 2], help="stock worker counts, e.g. 1,2")
    parser.add_argument("--tasks", type=int, default=1, help="the sink connector's tasks.max")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--bad-per-mille", type=float, default=1.0, help="as bench.stock_throughput (left out for the peer)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="give up a phase after this many s")
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--log-dir", help="Connect's logs and the stock runs' go here (default: a temp dir)")
    parser.add_argument(
        "--force", action="store_true", help="allow the default .stack/.stack-test stack dirs"
    )
    args = parser.parse_args()
    if args.log_dir:
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
