"""End to end: HTTP 202 from the edge -> the command's event on a WebSocket, at a fixed command rate.

    python -m bench.live_e2e [--rate 1000] [--duration 20] [--skus 1000] [--connections 32]
                             [--json out.json] [--stamps stamps.json] [--force]

What one run does, on YOUR OWN stack (it recreates the stock command topics and truncates the stock
tables; it refuses the default `.stack` / `.stack-test` stack dirs unless --force):

1. clean slate and --skus SKUs registered directly (bench.edge_http.prepare), an operator user;
2. start the real processes from the Procfile: edge (rate limits raised, still counted in Redis),
   stock_worker, outbox_relay and live_relay, each on a free port;
3. one WebSocket client (bench/live_ws.py) connects and subscribes to `inventory`, and a raw pattern
   subscription on the live Redis channels (bench/hops.py) notes when each publication left the relay;
4. POST /v1/items/{sku}/receipts {"quantity": 1} at --rate requests a second for --duration seconds,
   paced on a schedule over --connections keep-alive connections (a minimal HTTP/1.1 client: httpx would
   spend more CPU than the edge); for each 202 the time its response arrived and its command id;
5. for each command, the time its `stock_changed` publication arrived on the WebSocket;
6. afterwards, the stamps the system recorded itself (bench/hops.py): `issued_at` from the command topic,
   `processed_commands.applied_at` and its commit time, the event record's CreateTime, `published_at`.

Printed: p50/p90/p99/max of 202 -> frame (the frame can win the race against the 202's parsing on a busy
machine: counted, and taken as 0), the edge's 202 latency, how far the sender fell behind its schedule;
per hop of a command mean/p50/p90/p99 and the hop's share of the slowest 1 %; the worker's batches and the
outbox relay's round phases (its /metrics); each process's CPU over the run; RSS of every process at the
start, peak and end, and the machine's load. Everything (the generators too) shares the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import uvloop

from bench import hops, load, paced, stacks
from bench.edge_http import HIGH_LIMIT, login, prepare
from bench.hops import command_id
from bench.live_fanout import free_port
from bench.live_ws import BUCKET_US, LiveClient, RssSampler, Tally, mb, percentile_ms
from contracts.topics import EVENTS, STOCK_COMMANDS
from db.outbox_repo import asyncpg_dsn
from infra.live_redis import PUB_PATTERN
from infra.settings import get_settings
from tests import processes
from tests.drills import cluster

PIPELINE = ("edge", "stock_worker", "outbox_relay", "live_relay")
PORT_ENV = {
    "edge": "INVMON_EDGE_PORT",
    "stock_worker": "INVMON_STOCK_WORKER_PORT",
    "outbox_relay": "INVMON_OUTBOX_RELAY_PORT",
    "live_relay": "INVMON_LIVE_PORT",
    "price_worker": "INVMON_PRICE_WORKER_PORT",
    "notifier": "INVMON_NOTIFIER_PORT",
}


HIGH_LIMIT_ENV = {
    "INVMON_RATE_LIMIT_PRINCIPAL": HIGH_LIMIT,
    "INVMON_RATE_LIMIT_IP": HIGH_LIMIT,
    "INVMON_LOG_LEVEL": "WARNING",
}


def start_pipeline(
    log_dir: Path, names: tuple[str, ...] = PIPELINE, extra_env: dict[str, str] | None = None
) -> dict[str, processes.Process]:
    """The Procfile's processes `names`, each on a free port, the edge's rate limits raised; once ready."""
    ports = {name: free_port() for name in names}
    env = {
        **{PORT_ENV[name]: str(port) for name, port in ports.items()},
        **HIGH_LIMIT_ENV,
        **(extra_env or {}),
    }
    started = {name: processes.start(name, port, log_dir, env=env) for name, port in ports.items()}
    try:
        for process in started.values():
            processes.wait_ready(process)
    except BaseException:
        for process in started.values():
            process.stop()
        raise
    return started


async def send_paced(
    port: int, token: str, skus: int, rate: float, count: int, connections: int
) -> tuple[dict[str, tuple[int, int]], list[float], float, Counter[str]]:
    """Send `count` receipts on schedule; (command id -> wall-clock ns of its request and of its 202,
    202 latencies in ms, most seconds behind schedule, statuses)."""
    body = b'{"quantity":1}'
    accepted: dict[str, tuple[int, int]] = {}
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    def answered(answer: paced.Answer) -> None:
        statuses[str(answer.status)] += 1
        latencies.append((answer.read_ns - answer.sent_ns) / 1e6)
        found = command_id(answer.body)
        if found is not None:
            accepted[found] = (answer.sent_ns, answer.read_ns)

    schedule = paced.Schedule(rate, count)
    await paced.send_paced(
        port,
        token,
        schedule,
        connections,
        lambda i: (f"/v1/items/{load.sku_name(i % skus)}/receipts", body),
        answered,
    )
    return accepted, latencies, schedule.behind_s, statuses


DRIVER = "bench (this driver)"


def stack_procs(stack_dir: Path) -> dict[str, psutil.Process]:
    """PostgreSQL, Kafka and Redis of the stack, from its state file (missing ones are left out)."""
    path = stack_dir if stack_dir.is_absolute() else processes.ROOT / stack_dir
    state = json.loads((path / "state.json").read_text()) if (path / "state.json").exists() else {}
    found: dict[str, psutil.Process] = {}
    for name, info in state.get("procs", {}).items():
        with contextlib.suppress(KeyError, ValueError, psutil.Error):
            found[name] = psutil.Process(int(info["pid"]))
    return found


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    lay = cluster.layout() if args.cluster else None
    if lay is not None:
        settings = cluster.settings_of(settings, lay)
    elif stacks.default_stack(settings.stack_dir) and not args.force:
        print(f"refusing to wipe topics/tables of stack {str(settings.stack_dir)!r}: set INVMON_STACK_DIR")
        return 2
    print(f"preparing: recreate stock command topics, truncate stock tables, register {args.skus} SKUs ...")
    await prepare(settings, args.skus)
    events_start = await load.end_offsets(settings.kafka_bootstrap, EVENTS.name)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-live-e2e-"))
    copies: cluster.Pipeline | None = None
    if lay is None:
        pipeline = await asyncio.to_thread(start_pipeline, log_dir)
        front = {name: p.port for name, p in pipeline.items()}
    else:
        # 2 copies of each on the layout's ports; the load and the WebSocket go through nginx.
        copies = cluster.Pipeline(lay, cluster.password(settings), {**HIGH_LIMIT_ENV}, log_dir)
        await asyncio.to_thread(copies.start_all)
        pipeline = {(name if copy == 0 else f"{name}#2"): p for (name, copy), p in copies.procs.items()}
        front = {name: p.port for name, p in pipeline.items()} | {
            "edge": lay.nginx_port,
            "live_relay": lay.nginx_port,
        }
    samplers = {name: RssSampler(p.popen.pid).start() for name, p in pipeline.items()}
    cpu = hops.CpuWindow(
        {
            **{name: psutil.Process(p.popen.pid) for name, p in pipeline.items()},
            **stack_procs(settings.stack_dir if lay is None else cluster.cluster_dir()),
            DRIVER: psutil.Process(),
        },
        alone=frozenset({DRIVER}),
    )
    loop = asyncio.get_running_loop()
    seen: dict[str, int] = {}
    heard: dict[str, int] = {}
    count = int(args.rate * args.duration)
    relay_metrics = worker_metrics = ""
    try:
        token = await login(f"http://127.0.0.1:{front['edge']}")
        subscribed = asyncio.Event()
        tapped = asyncio.Event()

        def stamp(payload: bytes) -> int | None:
            found = command_id(payload)
            if found is not None:
                seen.setdefault(found, time.time_ns())
            return None

        relay_port = front["live_relay"]
        await loop.create_connection(
            lambda: LiveClient("127.0.0.1", relay_port, token, Tally(), subscribed.set, stamp),
            "127.0.0.1",
            relay_port,
        )
        await loop.create_connection(
            lambda: hops.RedisTap(PUB_PATTERN, heard, tapped.set),
            urlsplit(settings.redis_url).hostname or "127.0.0.1",
            settings.redis_port,
        )
        await asyncio.wait_for(asyncio.gather(subscribed.wait(), tapped.wait()), 30)
        rss_start = {name: psutil.Process(p.popen.pid).memory_info().rss for name, p in pipeline.items()}
        load_before = os.getloadavg()[0]
        print(f"sending {count} receipts at {args.rate:g}/s over {args.connections} connections ...")
        cpu.start()
        accepted, http_ms, behind, statuses = await send_paced(
            front["edge"], token, args.skus, args.rate, count, args.connections
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(c not in seen for c in accepted):  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # poll interval while the last events travel
        cpu.stop()
        rss_end = {name: psutil.Process(p.popen.pid).memory_info().rss for name, p in pipeline.items()}
        async with httpx.AsyncClient(timeout=10.0) as client:
            relay_metrics = (
                await client.get(f"http://127.0.0.1:{pipeline['outbox_relay'].port}/metrics")
            ).text
            worker_metrics = (
                await client.get(f"http://127.0.0.1:{pipeline['stock_worker'].port}/metrics")
            ).text
    finally:
        for sampler in samplers.values():
            sampler.stop()
        for process in pipeline.values():
            process.stop()
    print("reading the stamps back: command topic, event topic, processed_commands and outbox ...")
    issued = hops.issued_stamps(await hops.read_topic(settings.kafka_bootstrap, STOCK_COMMANDS.name))
    relayed = hops.relayed_stamps(await hops.read_topic(settings.kafka_bootstrap, EVENTS.name, events_start))
    db = await hops.db_stamps(asyncpg_dsn(settings.database_url))
    stamps: dict[str, dict[str, int]] = {}
    for cid, (sent, c202) in accepted.items():
        one = {"sent": sent, "c202": c202}
        for name, source in (
            ("issued", issued),
            ("applied", db.applied),
            ("committed", db.committed),
            ("relayed", relayed),
            ("published", db.published),
            ("redis", heard),
            ("frame", seen),
        ):
            if cid in source:
                one[name] = source[cid]
        stamps[cid] = one
    breakdown = hops.breakdown(stamps, db.commit_tracking)
    batches = hops.batches(stamps)
    rounds = {
        **hops.phases(relay_metrics, "invmon_outbox_round_seconds"),
        **hops.phases(relay_metrics, "invmon_outbox_round_rows", label="rows", scale=1.0),
    }
    worker_phases = hops.phases(worker_metrics, "invmon_batch_phase_seconds")
    hist: Counter[int] = Counter()
    early = 0
    for cid, (_, at) in accepted.items():
        if cid in seen:
            delta = seen[cid] - at
            early += delta < 0
            hist[max(0, delta) // (BUCKET_US * 1000)] += 1
    http_ms.sort()
    figures: dict[str, Any] = {
        "rate": args.rate,
        "commands": count,
        "accepted": len(accepted),
        "statuses": dict(statuses),
        "frames_matched": sum(hist.values()),
        "frame_before_202": early,
        "p50_ms": percentile_ms(hist, 50),
        "p90_ms": percentile_ms(hist, 90),
        "p99_ms": percentile_ms(hist, 99),
        "max_ms": percentile_ms(hist, 100),
        "http_202_p50_ms": http_ms[len(http_ms) // 2] if http_ms else float("nan"),
        "http_202_p99_ms": http_ms[int(len(http_ms) * 0.99)] if http_ms else float("nan"),
        "sender_behind_max_s": behind,
        "breakdown": breakdown,
        "worker_batches": batches,
        "outbox_relay_rounds": rounds,
        "worker_batch_phases": worker_phases,
        "cpu_percent_of_one_core": cpu.percent,
        "rss": {
            name: {
                "start": rss_start[name],
                "peak": max((s for _, s in samplers[name].samples), default=0),
                "end": rss_end[name],
            }
            for name in pipeline
        },
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": os.getloadavg()[0],
        "cores": os.cpu_count(),
    }
    print(
        f"accepted          {len(accepted)} of {count} ({dict(statuses)}); frames matched "
        f"{figures['frames_matched']}, of which {early} arrived before their 202 was read\n"
        f"202 -> WS frame   p50 {figures['p50_ms']:.1f} ms (target <= 10), p90 {figures['p90_ms']:.1f} ms, "
        f"p99 {figures['p99_ms']:.1f} ms (target <= 50), max {figures['max_ms']:.1f} ms\n"
        f"HTTP 202          p50 {figures['http_202_p50_ms']:.1f} ms, "
        f"p99 {figures['http_202_p99_ms']:.1f} ms; "
        f"sender behind schedule by at most {behind * 1000:.0f} ms"
    )
    hops.print_breakdown(breakdown)
    if not db.commit_tracking:
        print("  (no commit stamps: the cluster runs without track_commit_timestamp; see bench/README.md)")
    print(
        "worker batches    "
        + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in batches.items())
    )
    hops.print_phases("stock worker batch phases (ms)", worker_phases)
    hops.print_phases("outbox relay rounds (ms; rows per round under 'rows')", rounds)
    print("CPU, % of one core, from the first request to the last frame")
    for name, percent in cpu.percent.items():
        print(f"  {name:<30} {percent:6.1f}")
    for name, rss in figures["rss"].items():
        print(f"RSS {name:<13} start {mb(rss['start'])}, peak {mb(rss['peak'])}, end {mb(rss['end'])}")
    print(
        f"machine           {figures['cores']} cores, load average {load_before:.1f} before, "
        f"{figures['load_avg_1m_after']:.1f} after (other users of the box included)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))  # noqa: ASYNC240  # once, at the end
    if args.stamps:
        Path(args.stamps).write_text(json.dumps(stamps))  # noqa: ASYNC240  # once, at the end
    return 0 if figures["frames_matched"] == count else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="commands per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32, help="HTTP keep-alive connections")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--stamps", help="also write every command's stamps (wall-clock ns) to this file")
    parser.add_argument("--force", action="store_true", help="allow the default .stack/.stack-test dirs")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="against `invmon stack up --cluster` (INVMON_CLUSTER_BASE_PORT): 2 copies of each process on "
        "the layout's ports, HTTP and WebSocket through nginx",
    )
    stacks.add_profile_arguments(parser)
    args = parser.parse_args()
    stacks.run_profiles_if_asked("bench.live_e2e", args, PROFILE_FIGURES)
    sys.exit(uvloop.run(run(args)))


# What --profiles compares between the stacks (each from one run's --json figures).
PROFILE_FIGURES: dict[str, stacks.Figure] = {
    "202 -> frame p50 ms": lambda r: r["p50_ms"],
    "202 -> frame p99 ms": lambda r: r["p99_ms"],
    "HTTP 202 p99 ms": lambda r: r["http_202_p99_ms"],
    "stock worker % of a core": lambda r: r["cpu_percent_of_one_core"]["stock_worker"],
    "PostgreSQL % of a core": lambda r: r["cpu_percent_of_one_core"]["postgres"],
    "machine % of cores": lambda r: r["cpu_percent_of_one_core"]["machine"],
}


if __name__ == "__main__":
    main()
