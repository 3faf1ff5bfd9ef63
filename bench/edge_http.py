"""HTTP edge intake: requests/s and latency for one command per POST, and commands/s for batch intake.

    python -m bench.edge_http [--duration 25] [--concurrency 64] [--skus 1000] [--batch-sizes 1000,5000]
                              [--batch-duration 15] [--batch-senders 2] [--profile PATH] [--json out.json]

What one run does, on YOUR OWN stack (it recreates the stock command topics and truncates the stock
tables; it refuses the default `.stack` / `.stack-test` stack dirs unless --force):

1. recreate `invmon.stock.commands.v1` (+ dlq), truncate the stock tables, register --skus SKUs directly
   (bench.load) and create an operator user `bench-edge`;
2. start ONE edge process (the Procfile's command) with auth and rate limiting on: the limits are raised
   through INVMON_RATE_LIMIT_PRINCIPAL / _IP so the load is not refused, but every request still makes
   its rate-limit round trips to Redis. It publishes to the real broker (acks=all, idempotent). No worker
   runs: the commands stay on the topic, which is recreated again at the end (unless --keep-topics);
3. single commands: POST /v1/items/{sku}/receipts {"quantity": 1} over the SKUs in turn, at a fixed
   concurrency for --duration seconds, first with `wrk` (C, 2 threads, a Lua script for the bearer token,
   the body, the SKU path and per-status counts) when it is installed, then with a minimal asyncio
   HTTP/1.1 keep-alive client in this process (httpx costs 1-7 ms of CPU per request at this concurrency).
   Both generators run on the same CPUs as the edge, Kafka, Redis and PostgreSQL; the report gives their
   CPU next to the edge's;
4. batch intake: POST /v1/commands/stock:batch with JSON arrays of each --batch-sizes size (receive_stock
   commands, the edge assigns the ids), --batch-senders requests in flight, for --batch-duration seconds;
5. the edge's RSS (psutil, sampled every 100 ms from a thread) at start, peak and end, the edge's CPU per
   request, and its own server-side latency histogram (`invmon_edge_request_seconds`, from /metrics);
6. sections: the steps of one single-command request timed one by one in this process, with the edge's
   own code against the same Redis and broker (CPU and wall per call), to show where the edge's CPU goes;
7. with --profile PATH: the single-command wrk load and then the batch load against edge processes
   running under cProfile (stats to PATH.single / PATH.batch), listing own time by package and the top
   functions (the profiler's overhead inflates every figure, the shares are what count).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import logging
import os
import platform
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import BlockingConnectionPool

from api_edge.auth import _verified, decode_token
from api_edge.health import LATENCY, REQUESTS
from api_edge.ratelimit import RateLimits
from bench import load, stacks
from contracts.stock_commands import ReceiveStock
from contracts.topics import STOCK_COMMANDS
from db import auth_repo
from db.engine import make_engine
from infra.credentials import hash_password
from infra.kafka import make_broker, raw_producer
from infra.logging import configure_logging, hot_path_line
from infra.settings import Settings, get_settings
from tests import processes

ROOT = Path(__file__).resolve().parent.parent
USER = "bench-edge"
PASSWORD = "bench-edge-password-0123"
RECEIPTS_ROUTE = "/v1/items/{sku}/receipts"
BATCH_ROUTE = "/v1/commands/stock:batch"
HIGH_LIMIT = "100000000/minute"  # rate limiting stays on (Redis round trips), the load is never refused

# uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the profile is written.
_PROFILED_EDGE = """
import cProfile, signal, sys
def _exit(*_):
    raise SystemExit(0)
signal.signal(signal.SIGTERM, _exit)
from api_edge.main import main
profiler = cProfile.Profile()
try:
    profiler.runcall(main)
except SystemExit:
    pass
finally:
    profiler.dump_stats(sys.argv[1])
"""

# wrk: one POST per request over the SKUs in turn, with per-status counts gathered from every thread.
_WRK_SCRIPT = """
local token = "%(token)s"
local skus = %(skus)d
wrk.method = "%(method)s"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = tid * 7919
  statuses = {}
end

function request()
  counter = counter + 1
  return wrk.format(nil, %(path)s)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      parts[code] = (parts[code] or 0) + n
    end
  end
  local codes = {}
  for code, n in pairs(parts) do table.insert(codes, string.format('"%%d":%%d', code, n)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,' ..
    '"mean_us":%%.1f,"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"statuses":{%%s}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(codes, ",")))
end
"""


# ------------------------------------------------------------------------------------------ measuring


class Sampler:
    """RSS of one process every `interval_s`, from a thread so a busy event loop cannot delay it."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self._proc = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), self._proc.memory_info().rss))
            self._stop.wait(self._interval_s)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self) -> tuple[float, int]:
        """(when, RSS) of the highest sample."""
        return max(self.samples, key=lambda sample: sample[1], default=(time.monotonic(), 0))

    def peak_between(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Metrics:
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


@dataclass(slots=True)
class ServerSide:
    """The edge's own view of one route over a phase (its middleware's histogram, delta)."""

    count: int = 0
    mean_ms: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")


def server_side(before: Metrics, after: Metrics, route: str) -> ServerSide:
    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset({"route": route, **labels}.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    count = delta("invmon_edge_request_seconds_count")
    if count <= 0:
        return ServerSide()
    total = delta("invmon_edge_request_seconds_sum")
    bounds = sorted(
        float(dict(labels)["le"])
        for name, labels in after
        if name == "invmon_edge_request_seconds_bucket" and dict(labels).get("route") == route
    )
    cumulative = [(b, delta("invmon_edge_request_seconds_bucket", le=_le(b))) for b in bounds]

    def quantile(q: float) -> float:
        # Linear interpolation inside the bucket that holds the q-quantile (coarse: the buckets are wide).
        target, lower, below = q * count, 0.0, 0.0
        for bound, seen in cumulative:
            if seen >= target:
                if bound == float("inf"):
                    return lower * 1000
                share = (target - below) / (seen - below) if seen > below else 1.0
                return (lower + (bound - lower) * share) * 1000
            lower, below = bound, seen
        return float("nan")

    return ServerSide(int(count), total / count * 1000, quantile(0.5), quantile(0.99))


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


async def scrape(base: str) -> Metrics:
    async with httpx.AsyncClient(timeout=10.0) as client:
        return parse_metrics((await client.get(f"{base}/metrics")).text)


# ------------------------------------------------------------------------------------------- results


@dataclass(slots=True)
class SinglePhase:
    generator: str
    concurrency: int
    seconds: float = 0.0
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    edge_cpu_s: float = 0.0
    generator_cpu_s: float = float("nan")
    machine_busy_pct: float = float("nan")
    rss_peak: int = 0
    server: ServerSide = field(default_factory=ServerSide)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def accepted(self) -> int:
        return self.statuses.get("202", 0)


@dataclass(slots=True)
class BatchPhase:
    size: int
    senders: int
    seconds: float = 0.0
    requests: int = 0
    commands: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    edge_cpu_s: float = 0.0
    rss_peak: int = 0

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


# -------------------------------------------------------------------------------------------- phases


def machine_busy() -> float:
    times = psutil.cpu_times()
    return float(times.user + times.system + getattr(times, "nice", 0.0) + getattr(times, "irq", 0.0)
                 + getattr(times, "softirq", 0.0))  # fmt: skip


class _RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: pre-encoded receipts, the answer read by
    its Content-Length; latencies, statuses and transport errors tallied. httpx spends 1-7 ms of CPU per
    request at this concurrency (its pool degrades with many connections), so it would measure itself."""

    def __init__(self, port: int, token: str, skus: int) -> None:
        body = b'{"quantity":1}'
        self.port = port
        self.requests = [
            (
                f"POST /v1/items/{load.sku_name(i)}/receipts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            for i in range(skus)
        ]
        self.latencies: list[float] = []
        self.statuses: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()

    async def exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, since: float
    ) -> bool:
        """Send request n, read its answer, record its latency from `since`; False if the connection broke."""
        writer.write(self.requests[n % len(self.requests)])
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"content-length:")
            length = int(head[at + 15 : head.index(b"\r\n", at)]) if at >= 0 else 0
            await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            self.errors[type(error).__name__] += 1
            return False
        self.latencies.append(time.perf_counter() - since)
        self.statuses[head[9:12].decode()] += 1
        return True

    async def measure(
        self,
        result: SinglePhase,
        connections: list[Any],
        edge: psutil.Process,
        rss: Sampler,
        lead_s: float = 0.0,
    ) -> SinglePhase:
        """Run the connections; `lead_s`: how long after the start the first request is due."""
        base = f"http://127.0.0.1:{self.port}"
        before = await scrape(base)
        edge_cpu, own_cpu, busy = cpu_s(edge), time.process_time(), machine_busy()
        started = time.monotonic()
        await asyncio.gather(*connections)
        ended = time.monotonic()
        result.edge_cpu_s = cpu_s(edge) - edge_cpu
        result.generator_cpu_s = time.process_time() - own_cpu
        result.machine_busy_pct = (machine_busy() - busy) / (ended - started) / (os.cpu_count() or 1) * 100
        result.seconds = ended - started - lead_s
        result.requests = len(self.latencies)
        result.statuses, result.errors = dict(self.statuses), dict(self.errors)
        ms = [x * 1000 for x in self.latencies]
        result.p50_ms, result.p90_ms = percentile(ms, 50), percentile(ms, 90)
        result.p99_ms, result.max_ms = percentile(ms, 99), max(ms, default=float("nan"))
        result.rss_peak = rss.peak_between(started, ended)
        result.server = server_side(before, await scrape(base), RECEIPTS_ROUTE)
        return result


async def raw_phase(
    port: int, token: str, skus: int, concurrency: int, duration: float, edge: psutil.Process, rss: Sampler
) -> SinglePhase:
    """Closed loop: `concurrency` connections, each sending its next request when the last is answered."""
    client = _RawClient(port, token, skus)
    deadline = time.monotonic() + duration

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            n = index
            while time.monotonic() < deadline and await client.exchange(
                reader, writer, n, time.perf_counter()
            ):
                n += concurrency
        finally:
            writer.close()

    result = SinglePhase("asyncio raw HTTP/1.1 client (this process)", concurrency)
    return await client.measure(result, [connection(i) for i in range(concurrency)], edge, rss)


async def paced_phase(
    port: int,
    token: str,
    skus: int,
    rate: float,
    connections: int,
    duration: float,
    edge: psutil.Process,
    rss: Sampler,
) -> SinglePhase:
    """Open loop: request i is due at start + i / rate, sent over `connections` keep-alive connections
    (request i on connection i % connections). Latency counts from when the request was DUE, so a
    request that waited for its connection, or a sender that fell behind, shows in the figures
    (no coordinated omission)."""
    client = _RawClient(port, token, skus)
    count = int(rate * duration)
    lead_s = 0.2  # time to open the connections before the first request is due
    start = time.perf_counter() + lead_s

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(index, count, connections):
                due = start + i / rate
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)  # the schedule
                if not await client.exchange(reader, writer, i, due):
                    return
        finally:
            writer.close()

    result = SinglePhase(f"asyncio paced at {rate:.0f} requests/s (latency from the schedule)", connections)
    return await client.measure(result, [connection(i) for i in range(connections)], edge, rss, lead_s)


async def wrk_phase(
    base: str,
    token: str,
    skus: int,
    concurrency: int,
    duration: float,
    edge: psutil.Process,
    rss: Sampler | None,
    workdir: Path,
    baseline: bool = False,
) -> SinglePhase:
    """With `baseline`: GET /health/live instead (no auth, no Redis, no Kafka): the framework's floor."""
    if baseline:
        result = SinglePhase("wrk (2 threads, Lua): GET /health/live", concurrency)
        fill = {"method": "GET", "body": "nil", "path": '"/health/live"', "route": "/health/live"}
    else:
        result = SinglePhase("wrk (2 threads, Lua)", concurrency)
        path = 'string.format("/v1/items/BENCH-%05d/receipts", counter % skus)'
        fill = {"method": "POST", "body": """'{"quantity":1}'""", "path": path, "route": RECEIPTS_ROUTE}
    script = workdir / f"{'live' if baseline else 'receipts'}.lua"
    script.write_text(_WRK_SCRIPT % {"token": token, "skus": skus, **fill})
    command = [
        "wrk", "-t2", f"-c{concurrency}", f"-d{round(duration)}s", "--timeout", "10s", "--latency",
        "-s", str(script), base,
    ]  # fmt: skip
    before = await scrape(base)
    edge_cpu, busy = cpu_s(edge), machine_busy()
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    ps = psutil.Process(proc.pid)
    wrk_cpu = 0.0
    while proc.returncode is None:  # sample wrk's CPU while it lives (it is reaped right after)
        with contextlib.suppress(psutil.Error):
            wrk_cpu = cpu_s(ps)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.25)
    ended = time.monotonic()
    output = (await proc.communicate())[0].decode()
    result.edge_cpu_s = cpu_s(edge) - edge_cpu
    result.generator_cpu_s = wrk_cpu
    result.machine_busy_pct = (machine_busy() - busy) / (ended - started) / (os.cpu_count() or 1) * 100
    line = next((x for x in output.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{output}")
    figures = json.loads(line.removeprefix("BENCH_JSON "))
    result.seconds = figures["duration_us"] / 1e6
    result.requests = figures["requests"]
    result.statuses = {str(k): int(v) for k, v in figures["statuses"].items()}
    result.errors = {k: int(v) for k, v in figures["errors"].items() if v and k != "status"}
    result.p50_ms, result.p90_ms = figures["p50_us"] / 1000, figures["p90_us"] / 1000
    result.p99_ms, result.max_ms = figures["p99_us"] / 1000, figures["max_us"] / 1000
    if rss is not None:
        result.rss_peak = rss.peak_between(started, ended)
    result.server = server_side(before, await scrape(base), fill["route"])
    return result


def batch_bodies(size: int, skus: int, count: int = 4) -> list[bytes]:
    """Pre-serialised JSON arrays, so the load generator spends no CPU on encoding during the phase."""
    bodies = []
    for n in range(count):
        commands = [
            {"type": "receive_stock", "sku": load.sku_name((n * size + i) % skus), "quantity": 1}
            for i in range(size)
        ]
        bodies.append(json.dumps(commands, separators=(",", ":")).encode())
    return bodies


async def batch_phase(
    base: str,
    token: str,
    skus: int,
    size: int,
    senders: int,
    duration: float,
    edge: psutil.Process,
    rss: Sampler | None,
) -> BatchPhase:
    result = BatchPhase(size, senders)
    bodies = batch_bodies(size, skus)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    statuses: collections.Counter[str] = collections.Counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60.0) as client:

        async def sender(index: int, deadline: float) -> None:
            n = index
            while time.monotonic() < deadline:
                sent = time.perf_counter()
                response = await client.post(BATCH_ROUTE, content=bodies[n % len(bodies)])
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
                statuses[str(response.status_code)] += 1
                if response.status_code == 202:
                    result.commands += int(response.json()["accepted"])
                n += senders

        edge_cpu = cpu_s(edge)
        started = time.monotonic()
        await asyncio.gather(*(sender(i, started + duration) for i in range(senders)))
        ended = time.monotonic()
    result.edge_cpu_s = cpu_s(edge) - edge_cpu
    result.seconds = ended - started
    result.requests = len(result.latencies_ms)
    result.statuses = dict(statuses)
    if rss is not None:
        result.rss_peak = rss.peak_between(started, ended)
    return result


# ------------------------------------------------------------------------------------------ the edge


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def edge_env(port: int) -> dict[str, str]:
    return {
        "INVMON_EDGE_PORT": str(port),
        "INVMON_RATE_LIMIT_PRINCIPAL": HIGH_LIMIT,
        "INVMON_RATE_LIMIT_IP": HIGH_LIMIT,
    }


def start_edge(log_dir: Path, profile_to: Path | None = None) -> processes.Process:
    port = free_port()
    if profile_to is None:
        process = processes.start("edge", port, log_dir, env=edge_env(port))
    else:
        log = log_dir / "edge-profiled.log"
        popen = subprocess.Popen(
            [sys.executable, "-c", _PROFILED_EDGE, str(profile_to)],
            cwd=ROOT,
            env={**os.environ, **edge_env(port)},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        process = processes.Process("edge", port, popen, log)
    processes.wait_ready(process)
    return process


async def prepare(settings: Settings, skus: int) -> None:
    await load.reset_topics(settings.kafka_bootstrap, settings.kafka_partitions, settings.kafka_replication)
    await load.reset_tables(settings.database_url)
    await load.register_directly(settings.database_url, skus, settings.alert_clear_margin_pct)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await auth_repo.upsert_user(conn, USER, hash_password(PASSWORD), ["operator"])
    finally:
        await engine.dispose()


async def login(base: str) -> str:
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.post(f"{base}/v1/auth/token", data={"username": USER, "password": PASSWORD})
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


async def warm_up(base: str, token: str, skus: int, requests: int = 300) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10.0) as client:
        for i in range(requests):
            response = await client.post(
                f"/v1/items/{load.sku_name(i % skus)}/receipts", json={"quantity": 1}
            )
            if response.status_code != 202:
                raise RuntimeError(f"warm-up: {response.status_code} {response.text}")
        response = await client.post(BATCH_ROUTE, content=batch_bodies(100, skus, count=1)[0])
        if response.status_code != 202:
            raise RuntimeError(f"warm-up batch: {response.status_code} {response.text}")


# ------------------------------------------------------------------------------------------ sections


@dataclass(slots=True)
class Section:
    name: str
    calls: int
    cpu_us: float
    wall_us: float
    per_request: float = 1.0  # how many times one single-command request runs this step


async def timed(name: str, calls: int, step: Any, per_request: float = 1.0, concurrency: int = 64) -> Section:
    """Run `step` `calls` times, `concurrency` at a time like the edge under load (so publishes share
    producer batches and the loop's wake-ups); CPU (this process) and wall time per call."""
    await step(0)  # warm: connections, caches
    gc.collect()  # every step starts from the same heap, not from the garbage of the one before
    counter = iter(range(calls))

    async def worker() -> None:
        for i in counter:
            await step(i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Section(
        name,
        calls,
        (time.process_time() - cpu) / calls * 1e6,
        (time.perf_counter() - wall) / calls * 1e6,
        per_request,
    )


async def sections(settings: Settings, token: str, calls: int) -> list[Section]:
    """Each step of a single-command request, with the edge's own code and settings, against the same
    Redis and broker, one after the other in this process (no HTTP, no concurrency)."""
    high = settings.model_copy(update={"rate_limit_principal": HIGH_LIMIT, "rate_limit_ip": HIGH_LIMIT})
    fake_request: Any = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(clients=SimpleNamespace(settings=high)))
    )
    pool = BlockingConnectionPool.from_url(high.redis_url, max_connections=256, timeout=5)  # as the edge
    limits = RateLimits(high, pool)
    broker = make_broker(high, client_id="bench-sections")
    producer = raw_producer(high, client_id="bench-sections-raw")
    await broker.connect()
    await producer.start()
    now = datetime.now(UTC)

    def command(i: int) -> ReceiveStock:
        return ReceiveStock(
            command_id=uuid.uuid4(), sku=load.sku_name(i % 1000), issued_at=now, actor="user:bench-edge",
            source="http-edge", expected_version=None, quantity=1,
        )  # fmt: skip

    async def jwt_step(_: int) -> None:
        decode_token(fake_request, token)

    def uncached_jwt_step() -> Any:
        async def step(_: int) -> None:
            _verified.clear()
            decode_token(fake_request, token)

        return step

    limited: Any = SimpleNamespace(client=SimpleNamespace(host="127.0.0.2"), state=SimpleNamespace())

    async def ratelimit_step(_: int) -> None:
        await limits.check(limited, None, "user:bench-sections")

    async def model_step(i: int) -> None:
        command(i).model_dump_json().encode()

    async def faststream_step(i: int) -> None:
        c = command(i)
        headers = {"content-type": "application/json", "command-type": c.type}
        await asyncio.wait_for(
            broker.publish(
                c.model_dump_json().encode(), STOCK_COMMANDS.name, key=c.sku.encode(), headers=headers
            ),
            high.edge_publish_timeout_s,
        )

    async def raw_step(i: int) -> None:
        c = command(i)
        headers = [("content-type", b"application/json"), ("command-type", c.type.encode())]
        await producer.send_and_wait(
            STOCK_COMMANDS.name, c.model_dump_json().encode(), c.sku.encode(), headers=headers
        )

    devnull = open(os.devnull, "w")  # noqa: SIM115, ASYNC230  # the handler keeps it until the end
    real_stdout, sys.stdout = sys.stdout, devnull
    try:
        configure_logging("edge", "INFO", json=True)
    finally:
        sys.stdout = real_stdout

    async def log_step(i: int) -> None:
        hot_path_line(
            "invmon.edge.access", "http_request", method="POST", path="/v1/items/BENCH-00001/receipts",
            status=202, ms=3.21, client="127.0.0.1", command_id=str(uuid.uuid4()),
        )  # fmt: skip

    async def metrics_step(_: int) -> None:
        LATENCY.labels("/bench/sections").observe(0.001)
        REQUESTS.labels("/bench/sections", "202").inc()

    try:
        return [
            await timed("JWT: verified-token cache hit", calls, jwt_step),
            await timed("  (for comparison: PyJWT HS256 decode + claims)", calls, uncached_jwt_step(), 0.0),
            await timed("rate limits, IP + principal (1 Lua script, 1 round trip)", calls, ratelimit_step),
            await timed("command model + JSON (ReceiveStock)", calls, model_step),
            await timed("publish via FastStream, wait for the ack", calls, faststream_step),
            await timed("  (for comparison: raw aiokafka send_and_wait)", calls, raw_step, 0.0),
            await timed("1 access line (hot_path_line)", calls, log_step),
            await timed("prometheus: 1 histogram observe + 1 counter inc", calls, metrics_step),
        ]
    finally:
        logging.getLogger().handlers.clear()
        devnull.close()
        await producer.stop()
        await broker.stop()
        await pool.aclose()


# ------------------------------------------------------------------------------------------- profile

PACKAGES = (
    ("starlette", "starlette / fastapi"),
    ("fastapi", "starlette / fastapi"),
    ("uvicorn", "uvicorn / httptools"),
    ("httptools", "uvicorn / httptools"),
    ("pydantic", "pydantic"),
    ("redis", "redis-py + limits (rate limits)"),
    ("limits", "redis-py + limits (rate limits)"),
    ("faststream", "faststream (publish)"),
    ("aiokafka", "aiokafka (producer)"),
    ("kafka", "aiokafka (producer)"),
    ("structlog", "logging (structlog + stdlib)"),
    ("logging", "logging (structlog + stdlib)"),
    ("json", "json (stdlib)"),
    ("jwt", "PyJWT"),
    ("prometheus_client", "prometheus_client"),
    ("asyncio", "asyncio (stdlib)"),
    ("sqlalchemy", "sqlalchemy / asyncpg"),
    ("asyncpg", "sqlalchemy / asyncpg"),
    ("api_edge", "api_edge (ours)"),
    ("contracts", "contracts (ours)"),
    ("infra", "infra (ours)"),
)


def area(filename: str) -> str:
    if filename.startswith("<") or filename == "~":
        return "builtins / C calls"
    parts = Path(filename).parts
    for name, label in PACKAGES:
        if name in parts or f"{name}.py" in parts:
            return label
    if "python3" in filename or "lib/python" in filename:
        return "other stdlib"
    return "other"


def profile_report(path: Path, units: int | None, what: str, top: int = 20) -> list[str]:
    """Own time by package and the top functions. `units` None: count the requests the profile holds
    (calls of decode_token: every authenticated request, warm-up included)."""
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
    if units is None:
        units = sum(v[1] for (f, _, name), v in raw.items() if name == "decode_token" and "api_edge" in f)
    by_area: collections.Counter[str] = collections.Counter()
    rows: list[tuple[float, float, int, str]] = []
    total = 0.0
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in raw.items():
        by_area[area(filename)] += tottime
        total += tottime
        rows.append((tottime, cumtime, calls, f"{Path(filename).name}:{line}({name})"))
    per = max(units, 1)
    unit = what.removesuffix("s")
    lines = [f"  profiled own time {total:.1f} s over {units} {what} = {total / per * 1e6:.0f} us/{unit}"]
    lines.append("  own time by package:")
    for label, seconds in by_area.most_common():
        if seconds / total >= 0.005:
            share = f"{seconds:8.2f} s  {seconds / total:6.1%}  {seconds / per * 1e6:7.0f} us/req"
            lines.append(f"    {label:<34} {share.replace('us/req', f'us/{unit}')}")
    lines.append(f"  top {top} functions by own time:")
    for tottime, cumtime, calls, where in sorted(rows, reverse=True)[:top]:
        lines.append(f"    {tottime:7.2f} s own {cumtime:7.2f} s cum {calls:>9} calls  {where}")
    interesting = ("check", "publish_command", "accept", "decode_token", "claim", "measure",
                   "get_window_stats", "hit", "model_dump_json", "info")  # fmt: skip
    lines.append(f"  cumulative time of chosen steps (per {unit}):")
    for _own, cumtime, calls, where in sorted(rows, key=lambda r: -r[1]):
        name = where.rsplit("(", 1)[-1].rstrip(")")
        if name in interesting and cumtime / total > 0.01:
            lines.append(f"    {where:<60} {cumtime / per * 1e6:7.0f} us  ({calls} calls)")
    return lines


# ------------------------------------------------------------------------------------------- report


def mb(value: int) -> str:
    return f"{value / 2**20:.1f} MB"


def single_lines(phase: SinglePhase) -> list[str]:
    per_req = phase.edge_cpu_s / phase.requests * 1e6 if phase.requests else float("nan")
    others = {k: v for k, v in phase.statuses.items() if k != "202"}
    return [
        f"  {phase.generator}, concurrency {phase.concurrency}, {phase.seconds:.1f} s",
        f"    requests/s        {phase.rate:9.0f}   ({phase.requests} requests, {phase.accepted} x 202, "
        f"other statuses {others or 'none'}, transport errors {phase.errors or 'none'})",
        f"    latency (client)  p50 {phase.p50_ms:.1f} ms  p90 {phase.p90_ms:.1f} ms  "
        f"p99 {phase.p99_ms:.1f} ms  max {phase.max_ms:.1f} ms",
        f"    latency (edge)    mean {phase.server.mean_ms:.1f} ms  p50 ~{phase.server.p50_ms:.1f} ms  "
        f"p99 ~{phase.server.p99_ms:.1f} ms  (its middleware histogram, {phase.server.count} requests)",
        f"    CPU               edge {phase.edge_cpu_s:.1f} s = {per_req:.0f} us/request "
        f"({phase.edge_cpu_s / phase.seconds * 100:.0f}% of one core); load generator "
        f"{phase.generator_cpu_s:.1f} s; machine busy {phase.machine_busy_pct:.0f}% of "
        f"{os.cpu_count()} CPUs",
    ]


def batch_lines(phase: BatchPhase) -> list[str]:
    per_cmd = phase.edge_cpu_s / phase.commands * 1e6 if phase.commands else float("nan")
    return [
        f"  {phase.size} commands per request, {phase.senders} in flight, {phase.seconds:.1f} s: "
        f"{phase.rate:9.0f} commands/s  ({phase.requests} requests {phase.statuses}, "
        f"{phase.commands} accepted)",
        f"    request latency   p50 {percentile(phase.latencies_ms, 50):.0f} ms  "
        f"p99 {percentile(phase.latencies_ms, 99):.0f} ms;  edge CPU {per_cmd:.1f} us/command",
    ]


def verdict(label: str, value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    target_text = f"{'>=' if higher_is_better else '<='} {target:g}"
    return f"  {label:<40} {value:10.1f}  target {target_text}  {'MET' if ok else 'NOT MET'}"


def section_lines(steps: list[Section], measured: SinglePhase, baseline: SinglePhase | None) -> list[str]:
    per_request = measured.edge_cpu_s / measured.requests * 1e6 if measured.requests else float("nan")
    generator = measured.generator.split(" (")[0]
    lines = [
        "where a single-command request's CPU goes",
        f"  {'edge CPU per POST /v1/items/{sku}/receipts under ' + generator:<60} {per_request:8.0f} us",
    ]
    if baseline is not None and baseline.requests:
        floor = baseline.edge_cpu_s / baseline.requests * 1e6
        lines += [
            f"  {'edge CPU per GET /health/live under wrk (the floor)':<60} {floor:8.0f} us",
            f"  {'so auth, rate limits, body, command, publish, logs':<60} {per_request - floor:8.0f} us",
        ]
    lines += [
        "  each step alone, in this process, same code, same Redis and broker (indicative: a step costs more",
        "  inside the busy edge, where caches are cold and the loop is shared):",
        f"    {'step':<58} {'CPU us':>8} {'wall us':>8}",
        *(f"    {step.name:<58} {step.cpu_us:8.0f} {step.wall_us:8.0f}" for step in steps),
    ]
    return lines


async def profile(args: argparse.Namespace, log_dir: Path) -> list[str]:
    """The single-command load (wrk) and then the batch load, each against an edge under cProfile."""
    lines: list[str] = []
    path = Path(args.profile)
    for kind in ("single", "batch"):
        if kind == "single" and not shutil.which("wrk"):
            continue
        stats = path.with_name(f"{path.name}.{kind}")
        print(f"profiling ({kind}) for {args.profile_duration:.0f} s against an edge under cProfile ...")
        profiled = start_edge(log_dir, stats)
        base = f"http://127.0.0.1:{profiled.port}"
        edge = psutil.Process(profiled.popen.pid)
        try:
            token = await login(base)
            await warm_up(base, token, args.skus)
            if kind == "single":
                phase = await wrk_phase(
                    base, token, args.skus, args.concurrency, args.profile_duration, edge, None, log_dir
                )
                units, what = None, "requests"
                head = f"{phase.rate:.0f} requests/s, p99 {phase.p99_ms:.1f} ms"
            else:
                size = args.batch_sizes[0]
                batch = await batch_phase(
                    base, token, args.skus, size, args.batch_senders, args.profile_duration, edge, None
                )
                units, what = (
                    batch.commands + 100,
                    "commands",
                )  # + the warm-up batch; its 300 singles are noise
                head = f"{batch.rate:.0f} commands/s in batches of {size}"
        finally:
            profiled.stop(signal.SIGTERM)
        lines += [
            f"profile, {kind} load: {head} under cProfile (its overhead included); stats in {stats}",
            *profile_report(stats, units, what),
            "",
        ]
    return lines


# ---------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    stack_dir = str(settings.stack_dir)
    if stacks.default_stack(stack_dir) and not args.force:
        print(f"refusing to wipe topics/tables of stack {stack_dir!r}: set INVMON_STACK_DIR (or --force)")
        return 2
    log_dir: Path = args.log_dir
    wrk = shutil.which("wrk") if not args.no_wrk else None

    print(f"preparing: recreate stock command topics, truncate stock tables, register {args.skus} SKUs ...")
    await prepare(settings, args.skus)
    process = start_edge(log_dir)
    edge = psutil.Process(process.popen.pid)
    base = f"http://127.0.0.1:{process.port}"
    rss = Sampler(edge.pid).start()
    rss_start = edge.memory_info().rss
    marks: list[tuple[float, str]] = []  # (when, what the edge was doing from then on)

    def mark(label: str) -> None:
        marks.append((time.monotonic(), label))
        print(f"{label} ...")

    singles: list[SinglePhase] = []
    batches: list[BatchPhase] = []
    profile_lines: list[str] = []
    baseline: SinglePhase | None = None
    try:
        mark("login")
        token = await login(base)
        rss_login = edge.memory_info().rss
        mark("warm-up")
        await warm_up(base, token, args.skus)
        rss_warm = edge.memory_info().rss
        if wrk:
            mark(f"single commands with wrk for {args.duration:.0f} s")
            singles.append(
                await wrk_phase(base, token, args.skus, args.concurrency, args.duration, edge, rss, log_dir)
            )
        mark(f"single commands with the asyncio client for {args.duration:.0f} s")
        singles.append(
            await raw_phase(process.port, token, args.skus, args.concurrency, args.duration, edge, rss)
        )
        paced: SinglePhase | None = None
        if args.rate:
            mark(f"single commands paced at {args.rate:.0f}/s for {args.duration:.0f} s")
            paced = await paced_phase(
                process.port, token, args.skus, args.rate, args.concurrency, args.duration, edge, rss
            )
        if args.latency_concurrency:
            low = args.latency_concurrency
            mark(f"single commands at concurrency {low} for {args.latency_duration:.0f} s")
            if wrk:
                light = await wrk_phase(
                    base, token, args.skus, low, args.latency_duration, edge, rss, log_dir
                )
            else:
                light = await raw_phase(process.port, token, args.skus, low, args.latency_duration, edge, rss)
            singles.append(light)
        if wrk and args.baseline_duration:
            mark(f"baseline GET /health/live with wrk for {args.baseline_duration:.0f} s")
            baseline = await wrk_phase(
                base, token, args.skus, args.concurrency, args.baseline_duration, edge, rss, log_dir, True
            )
        for size in args.batch_sizes:
            mark(f"batches of {size} for {args.batch_duration:.0f} s")
            batches.append(
                await batch_phase(
                    base, token, args.skus, size, args.batch_senders, args.batch_duration, edge, rss
                )
            )
        rss_end = edge.memory_info().rss
        peak_at, rss_peak = rss.peak()
        peak_during = next((label for t, label in reversed(marks) if t <= peak_at), "start-up")
    finally:
        rss.stop()
        process.stop()

    print(f"sections: each step of a request {args.section_calls} times in this process ...")
    steps = await sections(settings, token, args.section_calls)
    if args.profile:
        profile_lines = await profile(args, log_dir)

    if not args.keep_topics:
        await load.reset_topics(
            settings.kafka_bootstrap, settings.kafka_partitions, settings.kafka_replication
        )

    best = max(singles, key=lambda p: p.rate)
    loaded = [p for p in singles if p.concurrency == args.concurrency]
    best_batch = max(batches, key=lambda p: p.rate) if batches else None
    report = [
        "",
        "HTTP edge intake benchmark",
        f"  host: {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}; "
        f"stack {stack_dir}; one edge process (uvicorn, 1 worker), auth (JWT) and rate limiting on "
        f"({HIGH_LIMIT} per principal and IP), publishing to the real broker (acks=all, idempotent); "
        f"{args.skus} pre-registered SKUs; logs in {log_dir}",
        "",
        "single command per POST (POST /v1/items/{sku}/receipts, 202 after the broker's ack)",
    ]
    for phase in singles:
        report += single_lines(phase)
    if paced is not None:
        report += single_lines(paced)
    if baseline is not None:
        report += [
            "",
            "baseline: the framework alone (no auth, no rate limit, no publish)",
            *single_lines(baseline),
        ]
    report += ["", "batch intake (POST /v1/commands/stock:batch, JSON array, 202 after every ack)"]
    for batch in batches:
        report += batch_lines(batch)
    report += [
        "",
        "edge RSS",
        f"  start {mb(rss_start)}  after one login {mb(rss_login)} (argon2id verify: 64 MiB memory cost)  "
        f"after warm-up {mb(rss_warm)}",
        f"  peak {mb(rss_peak)} (sampled during: {peak_during})  end {mb(rss_end)}",
        *(f"  peak during {p.generator}: {mb(p.rss_peak)}" for p in singles),
        *(f"  peak during batches of {b.size}: {mb(b.rss_peak)}" for b in batches),
        "",
        "against the issue's targets (best generator)",
        verdict("single: requests/s", best.rate, 4000),
        verdict(
            f"single: p99 latency ms at concurrency {args.concurrency}",
            min(p.p99_ms for p in loaded),
            20,
            higher_is_better=False,
        ),
        *(
            verdict(
                f"single: p99 latency ms at concurrency {p.concurrency}", p.p99_ms, 20, higher_is_better=False
            )
            for p in singles
            if p.concurrency != args.concurrency
        ),
    ]
    if paced is not None:
        report += [
            verdict(f"single: requests/s answered at {args.rate:.0f}/s offered", paced.rate, 4000),
            verdict(f"single: p99 latency ms at {args.rate:.0f}/s offered", paced.p99_ms, 20, False),
        ]
    if best_batch:
        report.append(verdict("batch: commands/s", best_batch.rate, 100_000))
    report += ["", *section_lines(steps, singles[0], baseline)]
    if profile_lines:
        report += ["", *profile_lines]
    print("\n".join(report))
    if args.json:
        figures = {
            "single": [_dump(p) for p in singles],
            "paced": _dump(paced) if paced is not None else None,
            "batch": [{**_dump(b), "latencies_ms": None, "rate": b.rate} for b in batches],
            "rss": {
                "start": rss_start,
                "login": rss_login,
                "warm": rss_warm,
                "peak": rss_peak,
                "end": rss_end,
            },
        }
        _write_json(Path(args.json), figures)
    return 0


def _dump(obj: Any) -> dict[str, Any]:
    out = {name: getattr(obj, name) for name in obj.__slots__}
    out["rate"] = obj.rate
    if isinstance(obj, SinglePhase):
        out["server"] = {n: getattr(obj.server, n) for n in obj.server.__slots__}
    return out


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    path.write_text(json.dumps(figures, indent=2, default=str))


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=25.0, help="seconds per single-command phase")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (connections)")
    parser.add_argument(
        "--latency-concurrency",
        type=int,
        default=4,
        help="also a light-load phase at this concurrency (0: no)",
    )
    parser.add_argument("--latency-duration", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=float, default=4000.0, help="offered requests/s of the paced phase (0: skip it)"
    )
    parser.add_argument(
        "--baseline-duration", type=float, default=10.0, help="GET /health/live with wrk (0: skip)"
    )
    parser.add_argument("--skus", type=int, default=1000, help="pre-registered SKUs the commands cycle over")
    parser.add_argument("--batch-sizes", type=_sizes, default=[1000, 5000], help="comma-separated")
    parser.add_argument("--batch-duration", type=float, default=15.0, help="seconds per batch size")
    parser.add_argument("--batch-senders", type=int, default=2, help="batch requests in flight")
    parser.add_argument("--no-wrk", action="store_true", help="use only the asyncio load generator")
    parser.add_argument(
        "--profile", help="also profile edges (cProfile) under single and batch load; PATH.single/.batch"
    )
    parser.add_argument("--section-calls", type=int, default=2000, help="calls per timed step")
    parser.add_argument("--profile-duration", type=float, default=15.0)
    parser.add_argument(
        "--keep-topics", action="store_true", help="leave the published commands on the topic"
    )
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--log-dir", help="edge logs go here (default: a new temp dir)")
    parser.add_argument(
        "--force", action="store_true", help="allow the default .stack/.stack-test stack dirs"
    )
    args = parser.parse_args()
    args.log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="bench-edge-"))
    args.log_dir.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
