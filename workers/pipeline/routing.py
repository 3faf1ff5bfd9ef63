"""Records whose partition is not the one Kafka's default partitioner gives their key.

The edge (and every Java client) puts a key on murmur2(key) % partitions; librdkafka clients (kcat,
confluent-kafka) default to CRC32 unless told `partitioner=murmur2_random`. Such a producer's commands for a
SKU land on another partition than the edge's, and per-SKU order between the two is lost. They are still
applied; the worker counts them and warns once per producer `source`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka.partitioner import murmur2
from prometheus_client import Counter

from workers.intake import Record

log = structlog.get_logger("invmon.worker")

MISPARTITIONED = Counter(
    "invmon_mispartitioned_records_total",
    "Command records not on the partition murmur2(key) gives (a producer not using Kafka's default "
    "partitioner: set partitioner=murmur2_random on librdkafka clients).",
    ["worker"],
)
_MAX_WARNED = 1000


@functools.lru_cache(maxsize=65_536)  # SKUs repeat; murmur2 is pure Python
def expected_partition(key: bytes, partitions: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionCheck:
    def __init__(self, worker: str) -> None:
        self._worker = worker
        self._warned: set[str] = set()

    def check(self, commands: Sequence[Any], sources: Sequence[Record], partitions: int) -> int:
        if partitions <= 0:
            return 0
        wrong = 0
        for command, record in zip(commands, sources, strict=True):
            if record.key is None or record.partition == expected_partition(record.key, partitions):
                continue
            wrong += 1
            source = str(getattr(command, "source", "?"))
            if source not in self._warned and len(self._warned) < _MAX_WARNED:
                self._warned.add(source)
                log.warning(
                    "mispartitioned_records",
                    worker=self._worker,
                    source=source,
                    partition=record.partition,
                    expected=expected_partition(record.key, partitions),
                    hint="partition keys with murmur2 (librdkafka: partitioner=murmur2_random)",
                )
        if wrong:
            MISPARTITIONED.labels(self._worker).inc(wrong)
        return wrong
