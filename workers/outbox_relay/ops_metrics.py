"""The pipeline's health and business gauges, read from PostgreSQL and Kafka every
INVMON_OPS_METRICS_INTERVAL_S (never per scrape: a busy scraper would otherwise add load where it hurts).

Exported by the outbox relay because it consumes no Kafka topic: `invmon_consumer_lag` is read from the
broker's committed offsets, so a stopped or wedged stock worker, price worker or notifier shows its lag
growing here while its own /metrics is gone. Every relay replica exports the same values (standbys too,
so the gauges survive a failover); alert rules and panels aggregate with `max by (...)` over instances.
A read that fails is logged and counted in invmon_ops_metrics_errors_total{source}, the gauges keep
their last values, and invmon_ops_metrics_refreshed_timestamp_seconds{source} shows how old they are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from db import ops_reads
from infra.consumer_lag import PartitionLag, consumer_lag
from infra.settings import Settings

log = structlog.get_logger("invmon.ops_metrics")

CONSUMER_LAG = Gauge(
    "invmon_consumer_lag",
    "Records each consumer group has still to read, per partition: the log end minus the group's committed "
    "offset (the whole log for a group that committed nothing).",
    ["group", "topic", "partition"],
)
OUTBOX_BACKLOG = Gauge("invmon_outbox_backlog", "Outbox events not yet published.")
OUTBOX_OLDEST_AGE = Gauge(
    "invmon_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest outbox event not yet published (0 when none waits).",
)
DELIVERIES = Gauge(
    "invmon_notify_deliveries",
    "Notification deliveries by channel (email, webhook) and status (pending, delivered, failed).",
    ["channel", "status"],
)
ITEMS_BY_ALERT_STATE = Gauge(
    "invmon_items_by_alert_state", "Active items by their stock alert state (ok, low, out, over).", ["state"]
)
APPROVALS_PENDING = Gauge("invmon_price_approvals_pending", "Price changes waiting for approval.")
TABLE_BYTES = Gauge(
    "invmon_table_bytes",
    "Bytes on disk of each table with its indexes and TOAST; a partitioned table's partitions summed.",
    ["table"],
)
ERRORS = Counter(
    "invmon_ops_metrics_errors_total",
    "Refreshes of the operations gauges that failed, by source (postgres, kafka); the gauges keep their "
    "last values.",
    ["source"],
)
REFRESHED = Gauge(
    "invmon_ops_metrics_refreshed_timestamp_seconds",
    "Unix time of the last successful refresh of the operations gauges, by source (postgres, kafka).",
    ["source"],
)

# Statuses and states always exported (0 when none), so a rule sees a series before the first one appears.
DELIVERY_CHANNELS = ("email", "webhook")
DELIVERY_STATUSES = ("pending", "delivered", "failed")
ALERT_STATES = ("ok", "low", "out", "over")


for _source in ("postgres", "kafka"):
    ERRORS.labels(_source)

# The label sets each gauge was last given (by id: a Gauge is not hashable by value).
_exported: dict[int, set[tuple[str, ...]]] = {}


def _replace(gauge: Gauge, values: Mapping[tuple[str, ...], float]) -> None:
    """Set `gauge` to exactly `values`: label sets that disappeared (a deleted group) are removed."""
    for labels in _exported.get(id(gauge), set()) - set(values):
        gauge.remove(*labels)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
    _exported[id(gauge)] = set(values)


async def refresh_postgres(conn: asyncpg.Connection) -> None:
    backlog = await ops_reads.outbox_backlog(conn)
    deliveries = await ops_reads.deliveries_by_channel_status(conn)
    states = await ops_reads.items_by_alert_state(conn)
    approvals = await ops_reads.pending_price_approvals(conn)
    sizes = await ops_reads.table_bytes(conn)
    OUTBOX_BACKLOG.set(backlog.unpublished)
    OUTBOX_OLDEST_AGE.set(backlog.oldest_age_s or 0.0)
    every_pair: dict[tuple[str, ...], float] = {
        (c, s): 0 for c in DELIVERY_CHANNELS for s in DELIVERY_STATUSES
    }
    for pair, n in deliveries.items():
        every_pair[pair] = n
    _replace(DELIVERIES, every_pair)
    _replace(
        ITEMS_BY_ALERT_STATE, {**{(s,): 0 for s in ALERT_STATES}, **{(s,): n for s, n in states.items()}}
    )
    APPROVALS_PENDING.set(approvals)
    _replace(TABLE_BYTES, {(t,): n for t, n in sizes.items()})


def export_lag(lags: Iterable[PartitionLag]) -> None:
    _replace(CONSUMER_LAG, {(x.group, x.topic, str(x.partition)): x.lag for x in lags})


class OpsMetrics:
    """Refreshes the gauges every `interval_s` until cancelled; a failing source never stops the loop."""

    def __init__(self, settings: Settings, dsn: str, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._dsn = dsn
        self._interval_s = settings.ops_metrics_interval_s
        self._clock = clock

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await self.refresh()
            await asyncio.sleep(max(self._interval_s - (time.monotonic() - started), 0.0))

    async def refresh(self) -> None:
        await asyncio.gather(self._guarded("postgres", self._postgres), self._guarded("kafka", self._kafka))

    async def _postgres(self) -> None:
        # A connection per refresh: nothing to keep healthy between refreshes seconds apart; the timeouts
        # keep one slow read from holding the next refresh.
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._interval_s,
            server_settings={"application_name": "invmon-ops-metrics", "statement_timeout": "10s"},
        )
        try:
            await refresh_postgres(conn)
        finally:
            await conn.close(timeout=5)

    async def _kafka(self) -> None:
        export_lag(await consumer_lag(self._settings))

    async def _guarded(self, source: str, read: Callable[[], Any]) -> None:
        try:
            await asyncio.wait_for(read(), timeout=max(self._interval_s, 5.0))
        except Exception as error:  # an outage must not end the loop: counted, logged, tried next interval
            ERRORS.labels(source).inc()
            log.warning("ops_metrics_failed", source=source, error=f"{type(error).__name__}: {error}")
        else:
            REFRESHED.labels(source).set(self._clock())
