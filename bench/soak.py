"""The soak: the whole pipeline under steady load for an hour, on the durable `run` profile, with retention
shortened to minutes so that partitions are created and dropped while it runs.

    python -m bench.soak [--minutes 60] [--window 5] [--rate 500] [--clients 100] [--out DIR]

On YOUR OWN bench stack (it recreates the stock command and event topics and truncates the stock and
notification tables; the `run` stack of bench.stacks: INVMON_STACK_DIR and its ports, brought up and
migrated if needed):

1. clean slate, --skus SKUs registered directly, a user with the operator and pricing roles;
2. the Procfile's edge, stock worker, price worker, outbox relay, notifier and live relay, each on a free
   port, with retention shortened (partition spans --span-s, retention --retention-s, maintenance every
   --maintenance-s); a webhook receiver in this process and a subscription to it for the stock alerts;
3. --clients WebSocket clients on `inventory`: one unfiltered (it measures 202 -> frame and must see no
   offset gap), the others each filtered on --filter-skus SKUs as a dashboard of a few items would be
   (0: all unfiltered; 100 unfiltered clients at 500 commands/s are 50,000 frames/s, which alone takes
   a core of this box);
4. --rate commands/s over HTTP for --minutes (and never more than rate x minutes commands): 1 in 10 a price
   (POST /prices, a 1 % move, never held for approval), the rest stock receipts and adjustments of one
   unit, and every --alert-every-th command of a connection a move of 95 units on a SKU of its own that
   crosses the low-stock level (100 -> 5 -> 100), so alerts fire and webhooks go out;
5. every 10 s, the acknowledged commands of the last minute are looked up in processed_commands: a command
   not there 60 s after its 202 is lost (the retention window must be longer than that);
6. per window (--window minutes): commands/s, HTTP 202 p99, 202 -> frame p99, each worker's batch p99 (the
   delta of its invmon_batch_apply_seconds histogram), RSS of every process (PostgreSQL: PSS summed over its
   processes), CPU, table sizes (partitions included), partitions created and dropped. Printed, and
   appended to soak.md and soak.json in --out;
7. the verdict (bench.soak_report): exit 1 if a bound fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import uvloop
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client.parser import text_string_to_metric_families

from bench import hops, load, paced, soak_report, stacks
from bench.edge_http import PASSWORD, USER, login
from bench.hops import command_id
from bench.live_e2e import DRIVER, stack_procs, start_pipeline
from bench.live_ws import BUCKET_US, LiveClient, Tally, percentile_ms
from bench.notify_latency import NOTIFY_TABLES
from bench.stock_throughput import Histogram
from contracts.topics import EVENTS, PRICE_COMMANDS, STOCK_COMMANDS, STOCK_COMMANDS_DLQ, Topic
from db import auth_repo
from db.engine import make_engine
from db.outbox_repo import asyncpg_dsn
from infra.credentials import hash_password
from infra.settings import Settings, get_settings
from invmon.stack.kafka_admin import admin_client, configs_of

PIPELINE = ("edge", "stock_worker", "price_worker", "outbox_relay", "notifier", "live_relay")
WORKERS = {"stock_worker": "stock", "price_worker": "price"}
RETAINED = ("outbox", "processed_commands", "notification_deliveries", "notification_attempts")
ALERT_EVENTS = ("low_stock_detected", "out_of_stock", "back_in_stock", "stock_level_normal")
ALERT_MOVE = 95  # 100 on hand -> 5, under the registered min_stock_level of 10, and back
LOST_AFTER_S = 60.0
CHECK_EVERY_S = 10.0


def retention_env(args: argparse.Namespace) -> dict[str, str]:
    """Settings of helper 1's retention (infra/settings.py), shortened so partitions come and go."""
    span, keep = str(args.span_s), str(args.retention_s)
    return {
        "INVMON_PARTITION_SPAN_OUTBOX_S": span,
        "INVMON_PARTITION_SPAN_PROCESSED_S": span,
        "INVMON_PARTITION_SPAN_NOTIFICATIONS_S": span,
        "INVMON_RETENTION_OUTBOX_S": keep,
        "INVMON_RETENTION_PROCESSED_S": keep,
        "INVMON_RETENTION_NOTIFICATIONS_S": keep,
        "INVMON_PARTITION_MAINTENANCE_INTERVAL_S": str(args.maintenance_s),
        "INVMON_COMMAND_TOPIC_RETENTION_S": str(args.retention_s - 60),
    }


async def command_topic_retention(bootstrap: str, retention_ms: int | None) -> None:
    """Set the command topics' retention.ms (None: back to the default). The workers refuse to
    start when processed_commands keeps ids for less than the topic keeps records (plus a margin), so a
    retention shortened to minutes needs the topics' shortened too; the records stay until a segment rolls."""
    topics: tuple[Topic, ...] = (STOCK_COMMANDS, PRICE_COMMANDS)
    # None puts back the settings' default (INVMON_COMMAND_TOPIC_RETENTION_S), which `invmon stack up` sets.
    default_s = Settings.model_fields["command_topic_retention_s"].default
    seconds = default_s if retention_ms is None else retention_ms // 1000
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, t.name, configs=configs_of(t, seconds)) for t in topics
    ]
    async with admin_client(bootstrap, 30_000) as client:
        # AlterConfigs replaces a topic's dynamic configs with this set: the project's own are in it.
        for answer in await client.alter_configs(resources):
            for resource in answer.resources:
                if int(resource[0]) != 0:
                    raise RuntimeError(f"{resource[3]}: alter configs error {resource[0]} {resource[1]}")


# ------------------------------------------------------------------------------------------ the load


@dataclass(frozen=True, slots=True)
class Mix:
    """Request i of the schedule: (path, body, whether a stock_changed frame follows an apply)."""

    skus: int
    connections: int
    alert_every: int

    def __call__(self, i: int) -> tuple[str, bytes, bool]:
        connection, k = i % self.connections, i // self.connections
        if k % self.alert_every == 0:
            # One SKU per connection: its moves go out in order, so they alternate 100 -> 5 -> 100.
            sku = load.sku_name(connection)
            if (k // self.alert_every) % 2 == 0:
                return (
                    f"/v1/items/{sku}/adjustments",
                    b'{"delta":-%d,"reason_code":"loss"}' % ALERT_MOVE,
                    True,
                )
            return f"/v1/items/{sku}/receipts", b'{"quantity":%d}' % ALERT_MOVE, True
        sku = load.sku_name(self.connections + i % (self.skus - self.connections))
        if i % 10 == 9:
            price = b"2.00" if (i // 10) % 2 else b"2.02"
            return f"/v1/items/{sku}/prices", b'{"currency":"EUR","selling_price":"%s"}' % price, False
        if k % 2:
            return f"/v1/items/{sku}/adjustments", b'{"delta":-1,"reason_code":"correction"}', True
        return f"/v1/items/{sku}/receipts", b'{"quantity":1}', True


@dataclass(slots=True)
class Acc:
    """What the driver saw in the current window."""

    statuses: Counter[int] = field(default_factory=Counter)
    http_ms: list[float] = field(default_factory=list)
    frames: Counter[int] = field(default_factory=Counter)  # 202 -> frame, 0.1 ms buckets
    early: int = 0
    lost: int = 0
    webhooks: int = 0


@dataclass(slots=True)
class Tracker:
    """Acknowledged commands until their frame arrives and their processed_commands row is seen."""

    acc: Acc = field(default_factory=Acc)
    awaiting_frame: dict[str, int] = field(default_factory=dict)  # command id -> 202 read (ns)
    frame_first: dict[str, int] = field(default_factory=dict)  # frames that beat their 202
    unverified: list[tuple[float, str]] = field(default_factory=list)  # (202 at monotonic, command id)
    lost_ids: list[str] = field(default_factory=list)
    accepted: int = 0

    def answered(self, answer: paced.Answer, frame_expected: bool) -> None:
        self.acc.statuses[answer.status] += 1
        self.acc.http_ms.append((answer.read_ns - answer.sent_ns) / 1e6)
        cid = command_id(answer.body) if answer.status == 202 else None
        if cid is None:
            return
        self.accepted += 1
        self.unverified.append((time.monotonic(), cid))
        if frame_expected:
            at = self.frame_first.pop(cid, None)
            if at is not None:
                self.acc.early += 1
                self.acc.frames[0] += 1
            else:
                self.awaiting_frame[cid] = answer.read_ns

    def frame(self, payload: bytes) -> int | None:
        cid = command_id(payload)
        if cid is not None:
            now = time.time_ns()
            at = self.awaiting_frame.pop(cid, None)
            if at is None:
                self.frame_first[cid] = now
            else:
                self.acc.frames[(now - at) // (BUCKET_US * 1000)] += 1
        return None  # the stamp callback's publish time: the driver measures from the 202 instead

    def forget_old(self, older_than_ns: int) -> None:
        """A rejected command never gets a frame: stop waiting for one after a while."""
        for book in (self.awaiting_frame, self.frame_first):
            for cid in [c for c, at in book.items() if at < older_than_ns]:
                del book[cid]


async def verify(tracker: Tracker, pg: asyncpg.Connection, settle_s: float = 5.0) -> None:
    """Look the settled acknowledged commands up in processed_commands; too old and absent = lost."""
    now = time.monotonic()
    due = [(at, cid) for at, cid in tracker.unverified if now - at >= settle_s]
    if not due:
        return
    tracker.unverified = tracker.unverified[len(due) :]
    found = {
        str(r["command_id"])
        for r in await pg.fetch(
            "SELECT command_id FROM processed_commands WHERE command_id = ANY($1::uuid[])",
            [c for _, c in due],
        )
    }
    again = [(at, cid) for at, cid in due if cid not in found and now - at < LOST_AFTER_S]
    gone = [cid for at, cid in due if cid not in found and now - at >= LOST_AFTER_S]
    tracker.acc.lost += len(gone)
    tracker.lost_ids += gone[: max(0, 20 - len(tracker.lost_ids))]
    tracker.unverified = again + tracker.unverified


# ------------------------------------------------------------------------------------------ receiver


async def webhook_receiver(tracker: Tracker) -> asyncio.Server:
    """Answers 200 to every POST and counts them (a keep-alive HTTP/1.1 server, nothing more)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                at = head.lower().find(b"content-length:")
                await reader.readexactly(int(head[at + 15 : head.index(b"\r\n", at)]) if at >= 0 else 0)
                tracker.acc.webhooks += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


# ------------------------------------------------------------------------------------------ sampling


def batch_buckets(text: str) -> dict[str, dict[float, float]]:
    """invmon_batch_apply_seconds per worker: upper bound -> cumulative count."""
    out: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "invmon_batch_apply_seconds_bucket":
                worker = s.labels.get("worker", "?")
                le = float(s.labels["le"])
                out.setdefault(worker, {})[le] = out.get(worker, {}).get(le, 0.0) + s.value
    return out


def delta_p99_ms(before: dict[float, float], after: dict[float, float]) -> float:
    buckets = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = buckets[-1][1] if buckets else 0.0
    value, _ = Histogram("batch", buckets, 0.0, total).quantile(0.99)
    return 1e3 * value


TABLES_SQL = """
SELECT c.relname AS name,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t)
            ELSE pg_total_relation_size(c.oid) END::bigint AS bytes
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""
PARTITIONS_OF_SQL = """
SELECT c.relname AS name
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass AND c.relkind IN ('r', 'p') AND c.relname LIKE $2
"""
PARTITIONS_SQL = """
SELECT i.inhrelid::regclass::text AS name
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE c.relkind IN ('r', 'p')
"""


@dataclass(slots=True)
class Sampler:
    """Process and database figures at window boundaries."""

    procs: dict[str, psutil.Process]
    trees: frozenset[str]  # counted with their children (PostgreSQL's backends)
    ports: dict[str, int]
    cpu: dict[str, dict[int, float]] = field(default_factory=dict)
    metrics: dict[str, dict[str, dict[float, float]]] = field(default_factory=dict)
    partitions: set[str] = field(default_factory=set)

    def _rss_mb(self, name: str) -> float:
        proc = self.procs[name]
        if name not in self.trees:
            return float(proc.memory_info().rss) / 2**20
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_full_info().pss
        return total / 2**20

    async def start(self, http: httpx.AsyncClient, pg: asyncpg.Connection) -> None:
        self.cpu = {n: hops.tree_cpu(p, n in self.trees) for n, p in self.procs.items()}
        self.metrics = {w: await self._scrape(http, w) for w in WORKERS}
        self.partitions = {r["name"] for r in await pg.fetch(PARTITIONS_SQL)}

    async def _scrape(self, http: httpx.AsyncClient, name: str) -> dict[str, dict[float, float]]:
        return batch_buckets((await http.get(f"http://127.0.0.1:{self.ports[name]}/metrics")).text)

    async def window(self, http: httpx.AsyncClient, pg: asyncpg.Connection) -> dict[str, Any]:
        cpu_s: dict[str, float] = {}
        for name, proc in self.procs.items():
            now = hops.tree_cpu(proc, name in self.trees)
            before = self.cpu.get(name, {})
            cpu_s[name] = sum(v - before.get(pid, 0.0) for pid, v in now.items())
            self.cpu[name] = now
        batch: dict[str, float] = {}
        for name, worker in WORKERS.items():
            now_buckets = await self._scrape(http, name)
            for label, after in now_buckets.items():
                p99 = delta_p99_ms(self.metrics.get(name, {}).get(label, {}), after)
                if math.isfinite(p99):
                    batch[label if label != "?" else worker] = p99
            self.metrics[name] = now_buckets
        partitions = {r["name"] for r in await pg.fetch(PARTITIONS_SQL)}
        created, dropped = sorted(partitions - self.partitions), sorted(self.partitions - partitions)
        self.partitions = partitions
        return {
            "cpu_s": cpu_s,
            "batch_p99_ms": batch,
            "rss_mb": {name: self._rss_mb(name) for name in self.procs},
            "table_bytes": {r["name"]: r["bytes"] for r in await pg.fetch(TABLES_SQL)},
            "partitions_total": len(partitions),
            "partitions_created": created,
            "partitions_dropped": dropped,
        }


# ------------------------------------------------------------------------------------------ run


async def prepare(settings: Settings, skus: int) -> None:
    """Clean slate: stock commands and events (so the notifier reads only this run's), stock and
    notification tables, the SKUs, and a user who may send stock and price commands."""
    await load.reset_topics(
        settings.kafka_bootstrap,
        settings.kafka_partitions,
        settings.kafka_replication,
        (STOCK_COMMANDS, STOCK_COMMANDS_DLQ, EVENTS),
    )
    pg = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await pg.execute(f"TRUNCATE {', '.join(load.STOCK_TABLES + NOTIFY_TABLES)} CASCADE")
        # Partitions made ahead by an earlier run with other spans (the defaults: hours, days) would hold
        # this run's rows past its retention: drop them (empty now); the workers make the soak's own.
        for table in reversed(RETAINED):
            for row in await pg.fetch(PARTITIONS_OF_SQL, table, f"{table}\\_p%"):
                await pg.execute(f'DROP TABLE "{row["name"]}"')
    finally:
        await pg.close()
    await load.register_directly(settings.database_url, skus, settings.alert_clear_margin_pct)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await auth_repo.upsert_user(conn, USER, hash_password(PASSWORD), ["operator", "pricing"])
    finally:
        await engine.dispose()


async def every(seconds: float, step: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)  # the period of a background step
        await step()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-soak-"))
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  # once, before anything runs
    md, js = out / "soak.md", out / "soak.json"
    print(
        f"profile {settings.stack_profile}, stack {settings.stack_dir}; report in {md} and {js}", flush=True
    )
    print(f"preparing: clean slate, {args.skus} SKUs ...", flush=True)
    await prepare(settings, args.skus)
    await command_topic_retention(settings.kafka_bootstrap, 1000 * (args.retention_s - 60))
    log_dir = out / "logs"
    log_dir.mkdir(exist_ok=True)
    tracker = Tracker()
    receiver = await webhook_receiver(tracker)
    env = {
        "INVMON_WEBHOOK_ALLOWLIST": '["127.0.0.1"]',
        "INVMON_NOTIFIER_CONSUMER_GROUP": f"soak-{uuid.uuid4()}",
        # One login serves the whole run: the driver does not refresh its token (at the default 15 minutes
        # every request after them got 401).
        "INVMON_JWT_TTL_S": str(int(args.minutes * 60) + 600),
    }
    pipeline = await asyncio.to_thread(start_pipeline, log_dir, PIPELINE, env)
    dsn = asyncpg_dsn(settings.database_url)
    pg, checker_pg = await asyncpg.connect(dsn), await asyncpg.connect(dsn)  # the checker runs beside
    stop = asyncio.Event()
    windows: list[dict[str, Any]] = []
    live = Tally()
    dashboards = Tally()
    try:
        port = receiver.sockets[0].getsockname()[1]
        await pg.execute(
            """
            INSERT INTO notification_subscriptions (id, name, event_types, kind, url, secret)
            VALUES ($1, 'soak', $2, 'webhook', $3, $4)
            """,
            uuid.uuid4(),
            list(ALERT_EVENTS),
            f"http://127.0.0.1:{port}/soak",
            "whsec_" + "C" * 44,
        )
        token = await login(f"http://127.0.0.1:{pipeline['edge'].port}")
        loop = asyncio.get_running_loop()
        relay = pipeline["live_relay"].port
        subscribed = 0
        all_in = asyncio.Event()

        def one_subscribed() -> None:
            nonlocal subscribed
            subscribed += 1
            if subscribed == args.clients:
                all_in.set()

        for n in range(args.clients):
            if n == 0 or args.filter_skus == 0:
                message = None
                tally, stamp = live, (tracker.frame if n == 0 else (lambda _: None))
            else:
                first = (n * args.filter_skus) % args.skus
                skus = [load.sku_name((first + j) % args.skus) for j in range(args.filter_skus)]
                message = {"type": "subscribe", "channel": "inventory", "filter": {"skus": skus}}
                tally, stamp = dashboards, (lambda _: None)
            await loop.create_connection(
                lambda t=tally, s=stamp, m=message: LiveClient(
                    "127.0.0.1", relay, token, t, one_subscribed, s, m
                ),
                "127.0.0.1",
                relay,
            )
        await asyncio.wait_for(all_in.wait(), 60)
        procs = {name: psutil.Process(p.popen.pid) for name, p in pipeline.items()}
        procs.update(stack_procs(settings.stack_dir))
        procs[DRIVER] = psutil.Process()
        sampler = Sampler(procs, frozenset({"postgres"}), {n: p.port for n, p in pipeline.items()})
        bounds = soak_report.Bounds(
            rate=args.rate,
            python=PIPELINE,
            retained=RETAINED,
            steady_after_s=args.retention_s + args.span_s + args.maintenance_s,
        )
        mix = Mix(args.skus, args.connections, args.alert_every)
        expects_frame: dict[int, bool] = {}

        def request(i: int) -> tuple[str, bytes]:
            path, body, frame = mix(i)
            expects_frame[i] = frame
            return path, body

        def answered(answer: paced.Answer) -> None:
            tracker.answered(answer, expects_frame.pop(answer.index, False))

        seconds = args.minutes * 60
        schedule = paced.Schedule(args.rate, int(args.rate * seconds), time.monotonic() + 0.5 + seconds)
        md.write_text(f"### soak {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n\n{vars(args)}\n\n")
        async with httpx.AsyncClient(timeout=10.0) as http:
            await sampler.start(http, pg)
            started = time.monotonic()
            print(
                f"{args.clients} WebSocket clients in; sending {args.rate:g} commands/s for "
                f"{args.minutes:g} min, a window every {args.window:g} min",
                flush=True,
            )

            async def close_window() -> None:
                acc, tracker.acc = tracker.acc, Acc()
                tracker.forget_old(time.time_ns() - int(LOST_AFTER_S * 1e9))
                ends = time.monotonic() - started
                figures = await sampler.window(http, pg)
                seconds_in = ends - (windows[-1]["ends_at_s"] if windows else 0.0)
                window = {
                    "index": len(windows) + 1,
                    "seconds": seconds_in,
                    "ends_at_s": ends,
                    "accepted": acc.statuses[202],
                    "statuses": {str(k): v for k, v in acc.statuses.items()},
                    "commands_per_s": acc.statuses[202] / seconds_in if seconds_in else math.nan,
                    "http_p99_ms": _pct(acc.http_ms, 0.99),
                    "frame_p50_ms": percentile_ms(acc.frames, 50),
                    "frame_p99_ms": percentile_ms(acc.frames, 99),
                    "frame_before_202": acc.early,
                    "lost": acc.lost,
                    "gaps": live.gaps - sum(w["gaps_total"] for w in windows[-1:]),
                    "gaps_total": live.gaps,
                    "ws_closed": live.closed + dashboards.closed,
                    "webhooks": acc.webhooks,
                    "sender_behind_s": schedule.behind_s,
                    "load_avg_1m": os.getloadavg()[0],
                    **figures,
                }
                windows.append(window)
                text = soak_report.window_markdown(window)
                print(text, flush=True)
                with md.open("a") as f:
                    f.write(text + "\n")
                js.write_text(json.dumps({"args": vars(args), "windows": windows}, indent=2, default=str))
                for name, p in pipeline.items():
                    if p.popen.poll() is not None:
                        raise RuntimeError(f"{name} exited: {p.log.read_text()[-2000:]}")

            async def check() -> None:
                await verify(tracker, checker_pg)

            sending = asyncio.create_task(
                paced.send_paced(pipeline["edge"].port, token, schedule, args.connections, request, answered)
            )
            checking = asyncio.create_task(every(CHECK_EVERY_S, check, stop))
            try:
                window_s = args.window * 60
                while not sending.done():
                    # A last stub of a window joins the one before: the sender stops at its deadline.
                    left = (schedule.deadline or 0.0) - time.monotonic()
                    timeout = None if left < 1.25 * window_s else window_s
                    done, _ = await asyncio.wait({sending}, timeout=timeout)
                    if sending in done:
                        sending.result()
                    await close_window()
                stop.set()
                await checking
                drain_until = time.monotonic() + LOST_AFTER_S + 10
                while tracker.unverified and time.monotonic() < drain_until:
                    await asyncio.sleep(1.0)  # waiting for the last commands' outcomes
                    await verify(tracker, checker_pg, settle_s=0.0)
                windows[-1]["lost"] += tracker.acc.lost + len(tracker.unverified)
            finally:
                stop.set()
                sending.cancel()
                checking.cancel()
    finally:
        receiver.close()
        await pg.close()
        await checker_pg.close()
        for process in pipeline.values():
            process.stop()
        await command_topic_retention(settings.kafka_bootstrap, None)
    checks = soak_report.verdict(windows, bounds)
    text = soak_report.verdict_markdown(
        checks, soak_report.cpu_per_command_us(windows), settings.stack_profile
    )
    if tracker.lost_ids:
        text += f"\nlost (first ids): {', '.join(tracker.lost_ids)}\n"
    print(text)
    with md.open("a") as f:
        f.write(text + "\n")
    js.write_text(
        json.dumps(
            {
                "args": vars(args),
                "profile": settings.stack_profile,
                "windows": windows,
                "verdict": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
                "cpu_us_per_command": soak_report.cpu_per_command_us(windows),
            },
            indent=2,
            default=str,
        )
    )
    return 0 if all(c.ok for c in checks) else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of load")
    parser.add_argument("--window", type=float, default=5.0, help="minutes per report window")
    parser.add_argument("--rate", type=float, default=500.0, help="commands per second over HTTP")
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32, help="HTTP keep-alive connections")
    parser.add_argument("--clients", type=int, default=100, help="WebSocket clients")
    parser.add_argument(
        "--filter-skus", type=int, default=10, help="SKUs per filtered client (0: unfiltered)"
    )
    parser.add_argument(
        "--alert-every",
        type=int,
        default=50,
        help="every Nth command of a connection crosses the low-stock level",
    )
    parser.add_argument("--span-s", type=int, default=60, help="partition span of the retained tables")
    parser.add_argument("--retention-s", type=int, default=180, help="retention of the retained tables")
    parser.add_argument("--maintenance-s", type=int, default=15, help="partition maintenance interval")
    parser.add_argument("--out", help="report directory (default: a new temp dir)")
    args = parser.parse_args()
    if args.retention_s < 120:
        # The loss check looks ids up for 70 s; the command topics keep records retention - 60 s.
        parser.error("--retention-s must be at least 120")
    env = {**stacks.stack_env("run"), **retention_env(args)}
    os.environ.update(env)
    stacks.ensure_stack(env)
    get_settings.cache_clear()
    sys.exit(uvloop.run(run(args)))


if __name__ == "__main__":
    main()
