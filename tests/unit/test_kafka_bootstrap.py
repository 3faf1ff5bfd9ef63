"""A bootstrap list (the replicated stack's three brokers) reaches the Kafka client as three servers."""

from __future__ import annotations

from infra.kafka import make_broker
from infra.settings import Settings


def test_a_comma_separated_bootstrap_is_three_servers() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1, 127.0.0.1:2,127.0.0.1:3", environment="local")
    broker = make_broker(settings, client_id="test")
    # FastStream's connection kwargs are what aiokafka's producer and consumers are built with.
    assert broker._connection_kwargs["bootstrap_servers"] == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
