"""Prometheus metrics of the stock worker."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

COMMANDS = Counter("invmon_stock_commands_total", "Stock commands handled, by outcome.", ["outcome"])
DEAD_LETTERS = Counter("invmon_stock_dead_letters_total", "Stock command records sent to the DLQ.")
BATCH_SIZE = Histogram(
    "invmon_stock_batch_records", "Records per batch.", buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000)
)
APPLY_SECONDS = Histogram(
    "invmon_stock_batch_apply_seconds",
    "Time to apply one batch (decode, transaction, commit).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_RETRIES = Counter("invmon_stock_batch_retries_total", "Batch transactions retried after an error.")
