"""Outbox relay throughput and stock transition -> first webhook attempt latency.

    python -m bench.notify_latency [--outbox-events 20000] [--skus 200] [--transitions 400] [--rate 25]
                                   [--json out.json]

On YOUR OWN stack (it truncates the stock, outbox and notification tables and recreates the stock command
and event topics; it refuses the default `.stack` / `.stack-test` stack dirs unless --force):

1. relay throughput: --outbox-events stock_changed rows are written straight into the outbox (COPY), then
   ONE outbox_relay process (the Procfile's command) starts and drains them to Kafka `invmon.events.v1`
   and Redis pub/sub. Events/s = rows / (last - first `published_at`); the Kafka topic's end offsets and a
   Redis subscriber in this process must each count every row;
2. latency: the stock worker, the relay and the notifier run as processes; one webhook subscription (all
   stock_changed events) points at an HTTP receiver in this process. --skus items are registered through
   the worker's own apply path, then --transitions receive_stock commands are produced to Kafka at --rate
   per second (one at a time, so each is its own small batch: the latency a lone change sees). Per event:
   first attempt = `notification_attempts.attempted_at` (the dispatcher's clock as it starts the request)
   minus `processed_commands.applied_at` (the worker's clock as it starts the batch that applied the
   command); arrival = the receiver's wall clock when the request arrived, minus the same.
3. RSS (psutil) of the relay, notifier and worker, sampled every 100 ms: peak and end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
from aiokafka import AIOKafkaProducer

from bench import load, stacks
from contracts.stock_commands import ReceiveStock
from contracts.topics import EVENTS, STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra import live_redis
from infra.redis_client import redis_client
from infra.settings import Settings, get_settings
from tests import processes
from tests.e2e.notify_support import free_port, serving

NOTIFY_TABLES = ("notification_attempts", "notification_deliveries", "notification_subscriptions")


class Rss:
    """Samples the RSS of some processes from a thread."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.last = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for name, proc in self._procs.items():
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                self.last[name] = rss
                self.peak[name] = max(self.peak[name], rss)

    def __enter__(self) -> Rss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def mb(value: int) -> str:
    return f"{value / 2**20:.0f} MB"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def start(name: str, log_dir: Path, env: dict[str, str]) -> processes.Process:
    port = free_port()
    port_var = {"outbox_relay": "INVMON_OUTBOX_RELAY_PORT", "notifier": "INVMON_NOTIFIER_PORT"}.get(
        name, "INVMON_STOCK_WORKER_PORT"
    )
    process = processes.start(name, port, log_dir, {port_var: str(port), **env})
    processes.wait_ready(process, timeout=90)
    return process


async def reset(settings: Settings, pg: asyncpg.Connection) -> None:
    await load.reset_topics(
        settings.kafka_bootstrap,
        settings.kafka_partitions,
        settings.kafka_replication,
        (STOCK_COMMANDS, STOCK_COMMANDS_DLQ, EVENTS),
    )
    await pg.execute(f"TRUNCATE {', '.join(load.STOCK_TABLES + NOTIFY_TABLES)} CASCADE")


def outbox_rows(count: int, skus: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        sku = load.sku_name(i % skus)
        event_id = uuid.uuid4()
        payload = {
            "schema_version": 1,
            "event_id": str(event_id),
            "sku": sku,
            "occurred_at": now.isoformat(),
            "command_id": str(uuid.uuid4()),
            "type": "stock_changed",
            "delta": 1,
            "reserved_delta": 0,
            "reason": "receive_stock",
            "on_hand": 100 + i,
            "reserved": 0,
            "available": 100 + i,
            "version": i + 2,
        }
        rows.append((event_id, "stock_changed", "inventory", sku, json.dumps(payload), now))
    return rows


async def relay_phase(
    settings: Settings, pg: asyncpg.Connection, log_dir: Path, events: int, skus: int
) -> dict[str, Any]:
    await pg.copy_records_to_table(
        "outbox",
        records=outbox_rows(events, skus),
        columns=("event_id", "event_type", "channel", "sku", "payload", "created_at"),
    )
    redis = redis_client(settings)
    pubsub = redis.pubsub()
    await pubsub.psubscribe(live_redis.PUB_PATTERN)
    received = 0

    async def count_redis() -> None:
        nonlocal received
        while received < events:
            if await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0) is not None:
                received += 1

    counter = asyncio.create_task(count_redis())
    relay = start("outbox_relay", log_dir, {})
    try:
        with Rss({"outbox_relay": relay.popen.pid}) as rss:
            while await pg.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # polling the database, which has no event to wait on
            await asyncio.wait_for(counter, 60)
        first, last = await pg.fetchrow("SELECT min(published_at), max(published_at) FROM outbox")
        on_kafka = await load.topic_end_total(settings.kafka_bootstrap, EVENTS.name)
    finally:
        counter.cancel()
        await pubsub.aclose()
        await redis.aclose()
    span = (last - first).total_seconds()
    return {
        "events": events,
        "events_per_s": events / span if span > 0 else float("inf"),
        "drain_s": span,
        "on_kafka": on_kafka,
        "on_redis": received,
        "relay": relay,
        "rss_peak": rss.peak["outbox_relay"],
        "rss_end": rss.last["outbox_relay"],
    }


async def caught_up(port: int, events: int, limit_s: float = 120) -> None:
    pattern = re.compile(r'^invmon_notifier_events_total\{outcome="read"\} (\S+)$', re.MULTILINE)
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            match = pattern.search((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
            if match and float(match[1]) >= events:
                return
            await asyncio.sleep(0.2)  # polling a metric
    raise TimeoutError(f"the notifier did not read {events} events in {limit_s} s")


async def latency_phase(
    settings: Settings,
    pg: asyncpg.Connection,
    log_dir: Path,
    relay: processes.Process,
    skus: int,
    transitions: int,
    rate: float,
) -> dict[str, Any]:
    await load.register_directly(settings.database_url, skus, settings.alert_clear_margin_pct)
    env = {
        "INVMON_WEBHOOK_ALLOWLIST": '["127.0.0.1"]',
        "INVMON_STOCK_CONSUMER_GROUP": f"bench-{uuid.uuid4()}",
    }
    worker = start("stock_worker", log_dir, env)
    notifier = start("notifier", log_dir, {**env, "INVMON_NOTIFIER_CONSUMER_GROUP": f"bench-{uuid.uuid4()}"})
    arrivals: dict[str, float] = {}
    try:
        # A new consumer group starts at the beginning: let it read the relay phase's events before the
        # subscription exists, so the dispatcher is not busy with them while latency is measured.
        await caught_up(notifier.port, await load.topic_end_total(settings.kafka_bootstrap, EVENTS.name))
        async with serving("127.0.0.1") as receiver:
            await pg.execute(
                """
                INSERT INTO notification_subscriptions (id, name, event_types, kind, url, secret)
                VALUES ($1, 'bench', '{stock_changed}', 'webhook', $2, $3)
                """,
                uuid.uuid4(),
                receiver.url("/ok/bench"),
                "whsec_" + "C" * 44,
            )
            pids = {
                "outbox_relay": relay.popen.pid,
                "notifier": notifier.popen.pid,
                "stock_worker": worker.popen.pid,
            }
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
            )
            await producer.start()
            try:
                with Rss(pids) as rss:
                    for i in range(transitions):
                        command = ReceiveStock(
                            command_id=uuid.uuid4(),
                            sku=load.sku_name(i % skus),
                            issued_at=datetime.now(UTC),
                            actor="bench",
                            source="bench",
                            quantity=1,
                        )
                        await producer.send_and_wait(
                            STOCK_COMMANDS.name, command.model_dump_json().encode(), key=command.sku.encode()
                        )
                        await asyncio.sleep(1 / rate)  # pacing the load, not waiting for a result
                    deadline = time.monotonic() + 60
                    while len(receiver.by_id("/ok/bench")) < transitions and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)  # the receiver records hits; polling them is enough here
            finally:
                await producer.stop()
            for hit in receiver.hits:
                arrivals.setdefault(hit.headers["webhook-id"], hit.at - time.monotonic() + time.time())
    finally:
        notifier.stop()
        worker.stop()
    rows = await pg.fetch(
        """
        SELECT o.event_id::text AS event_id,
               extract(epoch FROM min(a.attempted_at) - p.applied_at)::float8 AS to_attempt,
               extract(epoch FROM p.applied_at)::float8 AS applied,
               extract(epoch FROM o.published_at - p.applied_at)::float8 AS hop_relay,
               extract(epoch FROM d.created_at - o.published_at)::float8 AS hop_notifier,
               extract(epoch FROM min(a.attempted_at) - d.created_at)::float8 AS hop_dispatch
        FROM outbox o
        JOIN processed_commands p ON p.command_id = (o.payload->>'command_id')::uuid
        JOIN notification_deliveries d ON d.event_id = o.event_id
        JOIN notification_attempts a ON a.delivery_id = d.id
        WHERE o.event_type = 'stock_changed' AND p.command_type = 'receive_stock'
        GROUP BY o.event_id, o.published_at, p.applied_at, d.created_at
        """
    )
    to_attempt = [r["to_attempt"] * 1000 for r in rows]
    to_arrival = [(arrivals[r["event_id"]] - r["applied"]) * 1000 for r in rows if r["event_id"] in arrivals]
    return {
        "transitions": transitions,
        "delivered": len(to_arrival),
        "attempt_ms": to_attempt,
        "hops_ms": {hop: [r[f"hop_{hop}"] * 1000 for r in rows] for hop in ("relay", "notifier", "dispatch")},
        "arrival_ms": to_arrival,
        "rss_peak": rss.peak,
        "rss_end": rss.last,
    }


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    stack_dir = str(settings.stack_dir).rstrip("/")
    if stacks.default_stack(stack_dir) and not args.force:
        print(f"refusing to wipe topics/tables of stack {stack_dir!r}: set INVMON_STACK_DIR (or --force)")
        return 2
    log_dir = Path(args.log_dir or f"/tmp/bench-notify-{os.getpid()}")
    log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  # once, before anything runs
    pg = await asyncpg.connect(load.asyncpg_dsn(settings.database_url))
    try:
        await reset(settings, pg)
        relay_figures = await relay_phase(settings, pg, log_dir, args.outbox_events, args.skus)
        relay = relay_figures.pop("relay")
        try:
            await pg.execute(f"TRUNCATE {', '.join(load.STOCK_TABLES)}")
            figures = await latency_phase(
                settings, pg, log_dir, relay, args.skus, args.transitions, args.rate
            )
        finally:
            relay.stop()
    finally:
        await pg.close()
    cpus = os.cpu_count()
    load1, _, _ = os.getloadavg()
    print(f"stack {stack_dir}; {cpus} CPUs, load average {load1:.1f} at the end (the machine is shared)")
    r = relay_figures
    print(
        f"outbox -> Kafka + Redis: {r['events']} events in {r['drain_s']:.2f} s = "
        f"{r['events_per_s']:.0f} events/s "
        f"(Kafka counted {r['on_kafka']}, Redis {r['on_redis']}); relay RSS peak {mb(r['rss_peak'])}, "
        f"end {mb(r['rss_end'])}"
    )
    att, arr = figures["attempt_ms"], figures["arrival_ms"]
    print(
        f"stock transition -> webhook: {figures['delivered']}/{figures['transitions']} delivered "
        f"at {args.rate}/s"
    )
    if att:
        print(
            f"  to first attempt: p50 {percentile(att, 0.5):.1f} ms, p99 {percentile(att, 0.99):.1f} ms, "
            f"max {max(att):.1f} ms "
            f"(target p99 <= 200 ms: {'met' if percentile(att, 0.99) <= 200 else 'MISSED'})"
        )
    if arr:
        print(
            f"  to arrival at the receiver: p50 {percentile(arr, 0.5):.1f} ms, "
            f"p99 {percentile(arr, 0.99):.1f} ms"
        )
    for hop, label in (
        ("relay", "applied -> published by the relay (worker commit, NOTIFY, Kafka + Redis acks)"),
        ("notifier", "published -> delivery row (Kafka fetch, the notifier's batch transaction)"),
        ("dispatch", "delivery row -> first attempt (commit, NOTIFY, claim)"),
    ):
        values = figures["hops_ms"][hop]
        if values:
            print(f"    {label}: p50 {percentile(values, 0.5):.1f} ms, p99 {percentile(values, 0.99):.1f} ms")
    for name in figures["rss_peak"]:
        print(f"  RSS {name}: peak {mb(figures['rss_peak'][name])}, end {mb(figures['rss_end'][name])}")
    if args.json:
        report = json.dumps({"relay": relay_figures, "latency": figures}, default=str)
        Path(args.json).write_text(report)  # noqa: ASYNC240  # once, after the measurements
    ok = (
        r["on_kafka"] == r["events"]
        and r["on_redis"] == r["events"]
        and figures["delivered"] == args.transitions
    )
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outbox-events", type=int, default=20000)
    parser.add_argument("--skus", type=int, default=200)
    parser.add_argument("--transitions", type=int, default=400)
    parser.add_argument("--rate", type=float, default=25.0, help="receive_stock commands per second")
    parser.add_argument("--log-dir")
    parser.add_argument("--json")
    parser.add_argument(
        "--force", action="store_true", help="allow the default .stack/.stack-test stack dirs"
    )
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
