"""Talking to the broker with aiokafka's admin client: readiness probe and topic creation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from contracts.topics import PRICE_COMMANDS, STOCK_COMMANDS, Topic
from infra.kafka import topic_configs

TOPIC_ALREADY_EXISTS = 36
COMMAND_TOPICS = (STOCK_COMMANDS, PRICE_COMMANDS)
_quiet_depth = 0
_saved_level = logging.NOTSET


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """Silence aiokafka's connection-refused errors while we poll a broker that is still starting.

    Counted rather than saved per call: concurrent probes must not restore each other's level.
    """
    global _quiet_depth, _saved_level
    logger = logging.getLogger("aiokafka")
    if _quiet_depth == 0:
        _saved_level = logger.level
        logger.setLevel(logging.CRITICAL)
    _quiet_depth += 1
    try:
        yield
    finally:
        _quiet_depth -= 1
        if _quiet_depth == 0:
            logger.setLevel(_saved_level)


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str, timeout_ms: int) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        with _quiet_aiokafka():
            await client.start()
        yield client
    finally:
        await client.close()


async def metadata_ok(bootstrap: str, timeout_ms: int = 3000) -> bool:
    """Ready means a metadata request is answered, not merely that the port accepts connections."""
    try:
        async with admin_client(bootstrap, timeout_ms) as client:
            with _quiet_aiokafka():
                await client.list_topics()
    except (KafkaError, OSError, TimeoutError):
        return False
    return True


async def coordinators_ready(bootstrap: str) -> bool:
    """True once the group and transaction coordinators answer.

    The first FindCoordinator request creates __consumer_offsets / __transaction_state; doing it here
    keeps that one-off wait (and aiokafka's "coordinator not available" noise) out of the first consumer.
    """
    try:
        async with admin_client(bootstrap, 5000) as client:
            with _quiet_aiokafka():
                await client.find_coordinator("invmon-stack-probe", coordinator_type=0)
                await client.find_coordinator("invmon-stack-probe", coordinator_type=1)
    except (KafkaError, OSError, TimeoutError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: int
    all_have_leaders: bool


async def describe(bootstrap: str, names: list[str]) -> dict[str, TopicInfo]:
    """The named topics that exist (unknown names are simply absent from the result)."""
    async with admin_client(bootstrap, 10_000) as client:
        raw = await client.describe_topics(names)
    found: dict[str, TopicInfo] = {}
    for entry in raw:
        if int(entry["error_code"]) != 0:
            continue
        partitions = entry["partitions"]
        found[str(entry["topic"])] = TopicInfo(
            name=str(entry["topic"]),
            partitions=len(partitions),
            all_have_leaders=all(int(p["leader"]) >= 0 for p in partitions),
        )
    return found


async def leader_counts(bootstrap: str) -> dict[int, int]:
    """How many partitions (internal topics included) each broker leads, by node id."""
    async with admin_client(bootstrap, 5000) as client:
        names = await client.list_topics()
        raw = await client.describe_topics(list(names))
    counts: dict[int, int] = {}
    for entry in raw:
        for partition in entry["partitions"] if int(entry["error_code"]) == 0 else []:
            leader = int(partition["leader"])
            counts[leader] = counts.get(leader, 0) + 1
    return counts


def configs_of(
    topic: Topic, command_retention_s: int | None = None, min_insync_replicas: int | None = None
) -> dict[str, str]:
    """`min_insync_replicas` None: the broker's default (1 on the single node, 2 in the cluster)."""
    retention = command_retention_s if topic in COMMAND_TOPICS else None
    configs = topic_configs(
        compacted=topic.compacted, dead_letters=topic.name.endswith(".dlq"), retention_s=retention
    )
    # Kafka's default too, stated per topic: a replica that missed acknowledged writes never leads.
    configs["unclean.leader.election.enable"] = "false"
    if min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(min_insync_replicas)
    return configs


async def create(
    bootstrap: str,
    topics: list[Topic],
    partitions: int,
    replication: int,
    command_retention_s: int | None = None,
    min_insync_replicas: int | None = None,
) -> None:
    """Create the missing topics, and (re)apply the project's configs to those that exist, so an older
    stack's DLQ gets the size it needs (a worker refuses to start otherwise), and the command topics the
    retention `command_retention_s` (None: the broker's default) that processed ids must outlive, and
    every topic `min_insync_replicas` (None: the broker's default)."""
    requests = [
        NewTopic(
            name=topic.name,
            num_partitions=partitions,
            replication_factor=replication,
            topic_configs=configs_of(topic, command_retention_s, min_insync_replicas),
        )
        for topic in topics
    ]
    async with admin_client(bootstrap, 30_000) as client:
        response = await client.create_topics(requests)
        failures = [
            f"{e['topic']}: error {e['error_code']} {e.get('error_message') or ''}".strip()
            for e in response.to_object()["topic_errors"]
            if int(e["error_code"]) not in (0, TOPIC_ALREADY_EXISTS)
        ]
        existed = {
            str(e["topic"])
            for e in response.to_object()["topic_errors"]
            if int(e["error_code"]) == TOPIC_ALREADY_EXISTS
        }
        resources = [
            ConfigResource(
                ConfigResourceType.TOPIC,
                t.name,
                configs=configs_of(t, command_retention_s, min_insync_replicas),
            )
            for t in topics
            if t.name in existed
        ]
        if resources:
            # AlterConfigs replaces a topic's dynamic configs with this set: every config we own is in it.
            for answer in await client.alter_configs(resources):
                for resource in answer.resources:
                    if int(resource[0]) != 0:
                        failures.append(f"{resource[3]}: alter configs error {resource[0]} {resource[1]}")
    if failures:
        raise KafkaError("create topics failed: " + "; ".join(failures))
