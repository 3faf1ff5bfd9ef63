"""INVMON_KAFKA_SECURITY_PROTOCOL and friends against a real broker whose client listener is SASL_SSL:
admin (topic creation, topic configs), producers, a FastStream consumer, the lag reader and the DLQ tool
all get through with our settings, over PLAIN and SCRAM; a wrong password or an untrusted certificate is
named in one line instead of "Unable to bootstrap"."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.topics import ALL_TOPICS, STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.consumer_lag import consumer_lag
from infra.kafka import (
    KafkaAccessError,
    access_problem,
    client_security,
    explained,
    make_broker,
    raw_producer,
    read_topic_configs,
)
from infra.settings import Settings
from invmon import dlq
from invmon.stack import kafka_admin
from tests.integration.secure_kafka import PASSWORD, USER, SecureBroker, make_certificates, secure_broker

pytestmark = [pytest.mark.stack, pytest.mark.slow]
READY_WITHIN_S = 120.0


def secured(broker: SecureBroker, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap": broker.bootstrap,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": USER,
        "kafka_sasl_password": PASSWORD,
        "kafka_ssl_cafile": broker.cafile,
        "kafka_partitions": 1,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="module")
def broker(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    with secure_broker(stack, tmp_path_factory.mktemp("secure-kafka")) as started:
        settings = secured(started)
        deadline = time.monotonic() + READY_WITHIN_S
        while (problem := asyncio.run(access_problem(settings, timeout_ms=2000))) is not None:
            assert time.monotonic() < deadline, f"{problem}\n{started.log.read_text()[-3000:]}"
            time.sleep(0.5)  # poll interval while the broker starts
        asyncio.run(
            kafka_admin.create(started.bootstrap, list(ALL_TOPICS), 1, 1, security=client_security(settings))
        )
        yield started


async def test_admin_producers_consumers_lag_and_dlq_get_through_sasl_ssl(broker: SecureBroker) -> None:
    settings = secured(broker)
    configs = await read_topic_configs(settings, [STOCK_COMMANDS.name, STOCK_COMMANDS_DLQ.name])
    assert set(configs) == {STOCK_COMMANDS.name, STOCK_COMMANDS_DLQ.name}

    producer = raw_producer(settings, client_id="secure-test")
    dead_letters = raw_producer(settings, client_id="secure-test-dlq", dead_letters=True)
    async with explained(settings):
        await producer.start()
        await dead_letters.start()
    try:
        await (await producer.send(STOCK_COMMANDS.name, b"raw", key=b"SKU-1"))
        await (await dead_letters.send(STOCK_COMMANDS_DLQ.name, b"letter", key=b"SKU-1"))
    finally:
        await producer.stop()
        await dead_letters.stop()

    # FastStream's broker: its consumer and its producer take the same settings.
    fs = make_broker(settings, client_id="secure-test-broker")
    received: asyncio.Queue[bytes] = asyncio.Queue()

    @fs.subscriber(
        STOCK_COMMANDS.name, group_id=f"secure-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest"
    )
    async def handle(body: bytes) -> None:
        await received.put(body)

    await fs.start()
    try:
        await fs.publish(b"through-faststream", STOCK_COMMANDS.name, key=b"SKU-1")
        seen = {await asyncio.wait_for(received.get(), 60), await asyncio.wait_for(received.get(), 60)}
    finally:
        await fs.stop()
    assert seen == {b"raw", b"through-faststream"}

    lag = await consumer_lag(settings, groups=[settings.stock_consumer_group])
    assert sum(p.lag for p in lag if p.topic == STOCK_COMMANDS.name) == 2
    letters = [letter async for letter in dlq.read(settings, STOCK_COMMANDS_DLQ.name)]
    assert [letter.value for letter in letters] == [b"letter"]


async def test_scram_gets_through(broker: SecureBroker) -> None:
    settings = secured(broker, kafka_sasl_mechanism="SCRAM-SHA-256")
    assert await access_problem(settings) is None
    configs = await read_topic_configs(settings, [STOCK_COMMANDS.name])
    assert STOCK_COMMANDS.name in configs


async def test_a_wrong_password_is_named(broker: SecureBroker) -> None:
    settings = secured(broker, kafka_sasl_password="not-the-password")
    problem = await access_problem(settings)
    assert problem is not None
    assert f"refused INVMON_KAFKA_SASL_USERNAME='{USER}' (PLAIN)" in problem
    assert "Invalid username or password" in problem
    producer = raw_producer(settings, client_id="secure-test-wrong")
    with pytest.raises(KafkaAccessError, match="check INVMON_KAFKA_SASL_PASSWORD"):
        async with explained(settings):
            await producer.start()
    await producer.stop()


async def test_an_untrusted_broker_certificate_is_named(broker: SecureBroker, tmp_path: Path) -> None:
    other_ca, _ = make_certificates(tmp_path)
    problem = await access_problem(secured(broker, kafka_ssl_cafile=other_ca))
    assert problem is not None
    assert "TLS with Kafka" in problem
    assert "certificate verify failed" in problem
