"""Kafka pieces of tests that watch consumer groups: a private topic, and offsets committed for a group
as a consumer that stopped would have left them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from infra.settings import Settings
from tests.integration.helpers import run_id


@asynccontextmanager
async def private_topic(settings: Settings, partitions: int = 2) -> AsyncIterator[str]:
    name = f"invmon.test.lag.{run_id().lower()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        try:
            yield name
        finally:
            await admin.delete_topics([name])
    finally:
        await admin.close()


async def commit_offsets(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(at, "") for tp, at in offsets.items()})
    finally:
        await consumer.stop()
