"""Where the time of one command goes between the HTTP edge and the WebSocket frame (bench.live_e2e).

Every stamp is a wall-clock reading (CLOCK_REALTIME) of this machine, so stamps taken by different
processes, PostgreSQL included, can be subtracted. The stamps, per command:

- `sent`, `c202`, `frame`: this driver (request written, 202 read, `stock_changed` frame read);
- `redis`: this driver's own pattern subscription on the live pub/sub channels (`RedisTap`), i.e. the
  moment the outbox relay's PUBLISH reached a subscriber, as the WebSocket relay hears it too;
- `issued`: the command's `issued_at`, stamped by the edge before it publishes (read back from the
  command topic after the run);
- `applied`: `processed_commands.applied_at`, the worker's clock when its batch transaction began;
- `committed`: `pg_xact_commit_timestamp(processed_commands.xmin)` (not the outbox row's: marking it
  published writes a new row version with the relay's xmin), only when the cluster runs with
  `track_commit_timestamp = on` (otherwise the worker's and the relay's hops are reported as one);
- `relayed`: the CreateTime of the event's record on `invmon.events.v1`, i.e. when the outbox relay handed
  it to its producer, after the Redis publish (millisecond resolution);
- `published`: `outbox.published_at`, set by the relay after the Redis publish and the Kafka acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.load import end_offsets

COMMAND_ID = b'"command_id":'


def command_id(body: bytes) -> str | None:
    """The command id in a JSON body, whatever the spacing (the outbox's jsonb text has `": "`)."""
    at = body.find(COMMAND_ID)
    if at < 0:
        return None
    start = body.index(b'"', at + len(COMMAND_ID)) + 1
    return body[start : body.index(b'"', start)].decode()


def ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000


# ------------------------------------------------------------------------------------------ Redis tap


class RedisTap(asyncio.Protocol):
    """A pattern subscription spoken in raw RESP2 (redis-py would cost this shared process more CPU than the
    thing it measures): the arrival time of every publication, by the command id in its event."""

    def __init__(self, pattern: str, seen: dict[str, int], subscribed: Callable[[], None]) -> None:
        self._pattern = pattern.encode()
        self._seen = seen
        self._subscribed = subscribed
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        p = self._pattern
        transport.write(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(p), p))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self._buf
        buf += data
        at = 0
        while True:
            parsed = _push(buf, at)
            if parsed is None:
                break
            items, at = parsed
            if items[0] == b"pmessage":
                found = command_id(items[3])
                if found is not None:
                    self._seen.setdefault(found, now)
            elif items[0] == b"psubscribe":
                self._subscribed()
        if at:
            del buf[:at]


def _push(buf: bytearray, at: int) -> tuple[list[bytes], int] | None:
    """One RESP2 array of bulk strings / integers starting at `at`: (items, end), or None if incomplete."""
    end = buf.find(b"\r\n", at)
    if end < 0:
        return None
    if buf[at : at + 1] != b"*":
        raise RuntimeError(f"unexpected RESP from Redis: {bytes(buf[at : at + 80])!r}")
    count = int(buf[at + 1 : end])
    at = end + 2
    items: list[bytes] = []
    for _ in range(count):
        end = buf.find(b"\r\n", at)
        if end < 0:
            return None
        if buf[at : at + 1] == b":":
            items.append(bytes(buf[at + 1 : end]))
            at = end + 2
            continue
        size = int(buf[at + 1 : end])
        if len(buf) < end + 2 + size + 2:
            return None
        items.append(bytes(buf[end + 2 : end + 2 + size]))
        at = end + 2 + size + 2
    return items, at


# ------------------------------------------------------------------------------------------ CPU


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def tree_cpu(root: psutil.Process, children: bool = True) -> dict[int, float]:
    """CPU seconds of a process and its children (PostgreSQL's backends come and go)."""
    out: dict[int, float] = {}
    for proc in [root, *(root.children(recursive=True) if children else ())]:
        with contextlib.suppress(psutil.Error):
            out[proc.pid] = _cpu_s(proc)
    return out


def busy_s() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


@dataclass(slots=True)
class CpuWindow:
    """CPU of named process trees between `start()` and `stop()`, as % of one core. `alone` names the
    processes counted without their children (this driver: the pipeline processes are its children)."""

    procs: dict[str, psutil.Process]
    alone: frozenset[str] = frozenset()
    before: dict[str, dict[int, float]] = field(default_factory=dict)
    busy_before: float = 0.0
    started: float = 0.0
    percent: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.before = {name: tree_cpu(p, name not in self.alone) for name, p in self.procs.items()}
        self.busy_before = busy_s()
        self.started = time.monotonic()

    def stop(self) -> None:
        wall = time.monotonic() - self.started
        for name, proc in self.procs.items():
            after = tree_cpu(proc, name not in self.alone)
            before = self.before[name]
            self.percent[name] = 100 * sum(v - before.get(pid, 0.0) for pid, v in after.items()) / wall
        machine = 100 * (busy_s() - self.busy_before) / wall
        self.percent["not ours (others on the box)"] = machine - sum(self.percent.values())
        self.percent["machine"] = machine


# ------------------------------------------------------------------------------------------ stamps


async def read_topic(
    bootstrap: str, topic: str, start: dict[TopicPartition, int] | None = None
) -> list[tuple[int, bytes]]:
    """(CreateTime in ms, value) of every record from `start` (default: the beginning) to the end now."""
    ends = await end_offsets(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[int, bytes]] = []
    try:
        consumer.assign(list(ends))
        for tp in ends:
            consumer.seek(tp, (start or {}).get(tp, 0))
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                out += [(r.timestamp, r.value) for r in records if r.value is not None]
    finally:
        # aiokafka's no-group coordinator task must have run once, or stop() re-raises its cancellation.
        await asyncio.sleep(0)
        await consumer.stop()
    return out


@dataclass(slots=True)
class DbStamps:
    applied: dict[str, int]
    committed: dict[str, int]  # empty without track_commit_timestamp
    published: dict[str, int]
    commit_tracking: bool


async def db_stamps(dsn: str) -> DbStamps:
    conn = await asyncpg.connect(dsn)
    try:
        tracking = await conn.fetchval("SELECT current_setting('track_commit_timestamp')") == "on"
        committed = "pg_xact_commit_timestamp(p.xmin)" if tracking else "NULL::timestamptz"
        rows = await conn.fetch(
            f"""
            SELECT p.command_id::text AS cid, p.applied_at, o.published_at, {committed} AS committed
            FROM outbox o JOIN processed_commands p ON p.command_id = (o.payload->>'command_id')::uuid
            WHERE o.event_type = 'stock_changed'
            """
        )
    finally:
        await conn.close()
    stamps = DbStamps({}, {}, {}, tracking)
    for r in rows:
        stamps.applied[r["cid"]] = ns(r["applied_at"])
        if r["published_at"] is not None:
            stamps.published[r["cid"]] = ns(r["published_at"])
        if r["committed"] is not None:
            stamps.committed[r["cid"]] = ns(r["committed"])
    return stamps


def issued_stamps(records: list[tuple[int, bytes]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, value in records:
        command = json.loads(value)
        out[command["command_id"]] = ns(datetime.fromisoformat(command["issued_at"]))
    return out


def relayed_stamps(records: list[tuple[int, bytes]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for created_ms, value in records:
        found = command_id(value)
        if found is not None and b'"stock_changed"' in value:
            out.setdefault(found, created_ms * 1_000_000)
    return out


# ------------------------------------------------------------------------------------------ report


@dataclass(frozen=True, slots=True)
class Hop:
    name: str
    start: str
    end: str


def hops(commit_tracking: bool) -> list[Hop]:
    middle = (
        [
            Hop("worker: batch start -> commit", "applied", "committed"),
            Hop("relay: commit -> Redis pub (wake, read)", "committed", "redis"),
        ]
        if commit_tracking
        else [Hop("worker txn + relay wake, read -> Redis", "applied", "redis")]
    )
    return [
        Hop("edge: request sent -> issued_at", "sent", "issued"),
        Hop("edge: issued_at -> 202 read", "issued", "c202"),
        Hop("Kafka -> worker batch start", "issued", "applied"),
        *middle,
        Hop("Redis pub -> WS frame (live relay)", "redis", "frame"),
    ]


EXTRA = [
    Hop("  (202 read -> worker batch start)", "c202", "applied"),
    Hop("  (Redis pub -> Kafka send, ms res.)", "redis", "relayed"),
    Hop("  (Redis pub -> published_at marked)", "redis", "published"),
    Hop("issued_at -> WS frame", "issued", "frame"),
    Hop("202 read -> WS frame", "c202", "frame"),
]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def breakdown(stamps: dict[str, dict[str, int]], commit_tracking: bool) -> dict[str, Any]:
    """Per hop, over the commands that have every stamp: mean, p50, p90, p99 in ms, and the mean of each
    hop over the slowest 1% of commands by 202 -> frame (where the tail's time goes)."""
    names = {n for h in [*hops(commit_tracking), *EXTRA] for n in (h.start, h.end)}
    complete = [s for s in stamps.values() if names <= s.keys()]
    complete.sort(key=lambda s: s["frame"] - s["c202"])
    tail = complete[-max(1, len(complete) // 100) :] if complete else []
    out: dict[str, Any] = {"commands": len(complete), "hops": {}}
    for hop in [*hops(commit_tracking), *EXTRA]:
        values = sorted((s[hop.end] - s[hop.start]) / 1e6 for s in complete)
        out["hops"][hop.name] = {
            "mean": sum(values) / len(values) if values else float("nan"),
            "p50": _pct(values, 50),
            "p90": _pct(values, 90),
            "p99": _pct(values, 99),
            "slowest_1pct_mean": (
                sum((s[hop.end] - s[hop.start]) / 1e6 for s in tail) / len(tail) if tail else float("nan")
            ),
        }
    return out


def batches(stamps: dict[str, dict[str, int]]) -> dict[str, float]:
    """Worker batches seen through their stamps: commands per batch, and (with commit stamps) the gap
    from one batch's commit to the next batch's start (offset commit, fetch, decode)."""
    by_batch: dict[int, list[dict[str, int]]] = {}
    for s in stamps.values():
        if "applied" in s:
            by_batch.setdefault(s["applied"], []).append(s)
    starts = sorted(by_batch)
    out: dict[str, float] = {
        "batches": len(starts),
        "commands_per_batch": sum(len(v) for v in by_batch.values()) / len(starts) if starts else 0.0,
    }
    gaps = sorted(
        (nxt - by_batch[cur][0]["committed"]) / 1e6
        for cur, nxt in itertools.pairwise(starts)
        if "committed" in by_batch[cur][0]
    )
    if gaps:
        out["commit_to_next_batch_p50_ms"] = _pct(gaps, 50)
        out["commit_to_next_batch_p99_ms"] = _pct(gaps, 99)
    txn = sorted((v[0]["committed"] - k) / 1e6 for k, v in by_batch.items() if "committed" in v[0])
    if txn:
        out["batch_txn_p50_ms"] = _pct(txn, 50)
        out["batch_txn_p99_ms"] = _pct(txn, 99)
    return out


def print_breakdown(result: dict[str, Any]) -> None:
    print(f"per hop, ms, over {result['commands']} commands with every stamp")
    print(f"  {'hop':<42} {'mean':>6} {'p50':>6} {'p90':>6} {'p99':>6}  {'slowest 1%':>10}")
    for name, h in result["hops"].items():
        print(
            f"  {name:<42} {h['mean']:6.1f} {h['p50']:6.1f} {h['p90']:6.1f} {h['p99']:6.1f}"
            f"  {h['slowest_1pct_mean']:10.1f}"
        )


def phases(
    metrics_text: str, name: str, label: str = "phase", scale: float = 1000.0
) -> dict[str, dict[str, float]]:
    """A histogram by one label (or one series under `label`'s name when it has none): count, mean and
    bucket-interpolated p50/p99, times `scale` (seconds -> ms by default)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, list[tuple[float, float]]] = {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != name:
            continue
        for sample in family.samples:
            key = sample.labels.get(label, label)
            if sample.name.endswith("_bucket"):
                buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                sums[key] = sample.value
            elif sample.name.endswith("_count"):
                counts[key] = sample.value
    out: dict[str, dict[str, float]] = {}
    for key, cumulative in buckets.items():
        count = counts.get(key, 0.0)
        if count:
            out[key] = {
                "count": count,
                "mean": sums[key] / count * scale,
                "p50": _bucket_quantile(sorted(cumulative), count, 0.5) * scale,
                "p99": _bucket_quantile(sorted(cumulative), count, 0.99) * scale,
            }
    return out


def print_phases(title: str, found: dict[str, dict[str, float]]) -> None:
    print(title)
    for phase, r in found.items():
        print(
            f"  {phase:<11} n {r['count']:>6.0f}  mean {r['mean']:6.2f}  p50 {r['p50']:6.2f}"
            f"  p99 {r['p99']:6.2f}"
        )


def _bucket_quantile(cumulative: list[tuple[float, float]], count: float, q: float) -> float:
    rank, lower, below = q * count, 0.0, 0.0
    for bound, seen in cumulative:
        if seen >= rank:
            if bound == float("inf"):
                return lower
            inside = seen - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, seen
    return lower
