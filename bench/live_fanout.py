"""WebSocket relay fan-out: deliveries/s and publish -> client receipt latency for many clients.

    python -m bench.live_fanout [--clients 1000] [--client-procs 2] [--rate 50] [--duration 20]
                                [--json out.json] [--force]

What one run does, on YOUR OWN stack (it publishes made-up events on the `inventory` live channel of its
Redis; it refuses the default `.stack` / `.stack-test` stack dirs unless --force):

1. start ONE relay process (the Procfile's `live_relay` command) on a free port;
2. start --client-procs generator processes that open --clients WebSocket connections in all, each sending
   `connect` and subscribing to `inventory` (no filter), with the minimal client of bench/live_ws.py;
3. publish --rate events a second for --duration seconds, one event per call of the outbox relay's own
   Lua script (infra.live_redis: INCR, XADD, PUBLISH), each carrying its publish time (monotonic ns) in
   the event's `reason`;
4. every client counts its publications, checks that offsets are contiguous, and bins publish -> receipt
   latency (0.1 ms buckets); the generators report when every client has every event (or time is up).

Printed: deliveries (client receipts), deliveries/s over the window from the first publish to the last
receipt, latency p50/p90/p99/max, gaps and closed connections (both must be 0), the relay's RSS when the
clients are connected (start), its peak and at the end, its growth (median RSS of the last quarter of the
window minus the second quarter), the relay's CPU, the generators' CPU and the machine's load. The
generators run on the same cores as the relay: on a small machine they are the limit, not the relay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import jwt
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import uvloop

from bench import stacks
from bench.live_ws import LiveClient, RssSampler, Tally, mb, merge, percentile_ms
from infra.live_redis import LiveRedis
from infra.redis_client import redis_client
from infra.settings import Settings, get_settings
from tests import processes

MARK = b'"reason":"bench:'
SKU = "BENCH-FANOUT"


def stamp(payload: bytes) -> int | None:
    at = payload.find(MARK)
    if at < 0:
        return None
    at += len(MARK)
    return int(payload[at : payload.index(b'"', at)])


def viewer_token(settings: Settings) -> str:
    now = int(time.time())
    claims = {
        "sub": "user:bench-live",
        "roles": ["viewer"],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, settings.jwt_key(), algorithm="HS256")


def event(version: int) -> str:
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "sku": SKU,
            "occurred_at": datetime.now(UTC).isoformat(),
            "command_id": None,
            "type": "stock_changed",
            "delta": 1,
            "reserved_delta": 0,
            "reason": f"bench:{time.monotonic_ns()}",
            "on_hand": version,
            "reserved": 0,
            "available": version,
            "version": version,
        },
        separators=(",", ":"),
    )


# ------------------------------------------------------------------------------------------ generator


async def child(port: int, clients: int, expect: int, within: float) -> None:
    """One generator process: `clients` connections; prints `ready`, then its tally as JSON."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    token = os.environ["BENCH_LIVE_TOKEN"]
    ready = asyncio.Event()
    subscribed = 0

    def on_subscribed() -> None:
        nonlocal subscribed
        subscribed += 1
        if subscribed == clients:
            ready.set()

    gate = asyncio.Semaphore(50)
    protocols: list[LiveClient] = []

    async def open_one() -> None:
        async with gate:
            _, protocol = await loop.create_connection(
                lambda: LiveClient("127.0.0.1", port, token, tally, on_subscribed, stamp), "127.0.0.1", port
            )
            protocols.append(protocol)

    await asyncio.gather(*(open_one() for _ in range(clients)))
    deadline = time.monotonic() + 120
    while not ready.is_set():
        if tally.closed or time.monotonic() > deadline:
            raise SystemExit(f"{subscribed} of {clients} subscribed, {tally.closed} closed by the relay")
        await asyncio.sleep(0.05)  # poll: a close must end the wait as surely as the last subscription
    print("ready", flush=True)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(p.received < expect for p in protocols):  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # poll interval while waiting for the clients to have everything
    cpu = time.process_time()
    print(json.dumps({**tally.to_json(), "cpu_s": cpu}), flush=True)
    for p in protocols:
        if p.transport is not None:
            p.transport.close()


# ------------------------------------------------------------------------------------------ driver


async def spawn(
    port: int, clients: int, expect: int, within: float, token: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.live_fanout", "--child", "--port", str(port),
        "--clients", str(clients), "--expect", str(expect), "--timeout", str(within),
        env={**os.environ, "BENCH_LIVE_TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
        limit=2**26,  # the tally line carries a whole latency histogram
    )  # fmt: skip


async def publish(settings: Settings, rate: float, count: int) -> tuple[int, float]:
    """Publish `count` events at `rate`/s; returns (monotonic ns of the first publish, most seconds late)."""
    redis = redis_client(settings)
    live = LiveRedis(redis)
    first_ns, late = 0, 0.0
    try:
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing the publisher, not waiting for a result
            late = max(late, -wait)
            if not first_ns:
                first_ns = time.monotonic_ns()
            await live.publish("inventory", [(SKU, "stock_changed", event(i + 1))], history=10000)
    finally:
        await redis.aclose()
    return first_ns, late


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if stacks.default_stack(settings.stack_dir) and not args.force:
        print(f"refusing to publish on stack {str(settings.stack_dir)!r}: set INVMON_STACK_DIR (or --force)")
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    port = free_port()
    env = {
        "INVMON_LIVE_PORT": str(port),
        "INVMON_LIVE_MAX_CONNECTIONS": str(args.clients + 100),
        # Every client connects from 127.0.0.1 before sending `connect`: the per-IP bound would close them.
        "INVMON_LIVE_MAX_UNAUTHENTICATED_PER_IP": str(args.clients + 100),
        "INVMON_LOG_LEVEL": "WARNING",
    }
    relay = processes.start("live_relay", port, log_dir, env=env)
    count = int(args.rate * args.duration)
    try:
        await asyncio.to_thread(processes.wait_ready, relay)
        proc = psutil.Process(relay.popen.pid)
        rss = RssSampler(proc.pid).start()
        token = viewer_token(settings)
        shares = [args.clients // args.client_procs + (i < args.clients % args.client_procs)
                  for i in range(args.client_procs)]  # fmt: skip
        connect_started = time.monotonic()
        children = [await spawn(port, n, count, args.duration + 60, token) for n in shares]
        for c in children:
            assert c.stdout is not None
            line = await asyncio.wait_for(c.stdout.readline(), 180)
            if line.strip() != b"ready":
                raise RuntimeError(f"generator failed: {line!r}")
        connected_s = time.monotonic() - connect_started
        rss_start = proc.memory_info().rss
        relay_cpu = sum(proc.cpu_times()[:2])
        load_before = os.getloadavg()[0]
        window_start = time.monotonic()
        print(f"{args.clients} clients connected and subscribed in {connected_s:.1f} s; publishing "
              f"{count} events at {args.rate:g}/s ...")  # fmt: skip
        first_ns, late = await publish(settings, args.rate, count)
        published_at = time.monotonic()
        outputs = []
        for c in children:
            assert c.stdout is not None
            outputs.append(json.loads(await c.stdout.readline()))
            await c.wait()
        window_end = time.monotonic()
        relay_cpu = sum(proc.cpu_times()[:2]) - relay_cpu
        rss_end = proc.memory_info().rss
        rss.stop()
    finally:
        relay.stop()
    tally = merge(outputs)
    seconds = (tally.last_ns - first_ns) / 1e9
    window = rss.between(window_start, published_at)
    quarter = max(1, len(window) // 4)
    growth = median(window[-quarter:]) - median(window[quarter : 2 * quarter]) if len(window) >= 8 else 0
    figures: dict[str, Any] = {
        "clients": args.clients,
        "client_procs": args.client_procs,
        "events": count,
        "rate": args.rate,
        "deliveries": tally.received,
        "expected": count * args.clients,
        "deliveries_per_s": tally.received / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile_ms(tally.hist, 50),
        "p90_ms": percentile_ms(tally.hist, 90),
        "p99_ms": percentile_ms(tally.hist, 99),
        "max_ms": percentile_ms(tally.hist, 100),
        "gaps": tally.gaps,
        "closed": tally.closed,
        "publisher_late_max_s": late,
        "relay_rss_start": rss_start,
        "relay_rss_peak": max((s for _, s in rss.samples), default=0),
        "relay_rss_end": rss_end,
        "relay_rss_growth": growth,
        "relay_cpu_s": relay_cpu,
        "relay_cpu_pct": relay_cpu / (window_end - window_start) * 100,
        "generator_cpu_s": sum(o["cpu_s"] for o in outputs),
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": os.getloadavg()[0],
        "cores": os.cpu_count(),
    }
    print(
        f"deliveries        {tally.received} of {count * args.clients} "
        f"({figures['deliveries_per_s']:,.0f}/s over {seconds:.1f} s; target >= 50,000/s)\n"
        f"publish->receipt  p50 {figures['p50_ms']:.1f} ms, p90 {figures['p90_ms']:.1f} ms, "
        f"p99 {figures['p99_ms']:.1f} ms (target <= 100 ms), max {figures['max_ms']:.1f} ms\n"
        f"gaps {tally.gaps}, closed connections {tally.closed}, "
        f"publisher late by at most {late * 1000:.0f} ms\n"
        f"relay RSS         start {mb(rss_start)}, peak {mb(figures['relay_rss_peak'])}, end {mb(rss_end)}, "
        f"growth {mb(growth)} (target < 400 MB, flat)\n"
        f"relay CPU         {relay_cpu:.1f} s ({figures['relay_cpu_pct']:.0f}% of one core); generators "
        f"{figures['generator_cpu_s']:.1f} s in {args.client_procs} processes\n"
        f"machine           {figures['cores']} cores, load average {load_before:.1f} before, "
        f"{figures['load_avg_1m_after']:.1f} after (other users of the box included)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))  # noqa: ASYNC240  # once, at the end
    return 0 if tally.gaps == 0 and tally.received == count * args.clients else 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50.0, help="events published per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--force", action="store_true", help="allow the default .stack/.stack-test dirs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        uvloop.run(child(args.port, args.clients, args.expect, args.timeout))
        return
    sys.exit(uvloop.run(run(args)))


if __name__ == "__main__":
    main()
