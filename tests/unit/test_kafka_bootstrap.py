"""A bootstrap list (the replicated stack's three nodes) reaches every FastStream broker as three hosts."""

from __future__ import annotations

from infra.kafka import make_broker
from infra.settings import Settings


def test_a_comma_separated_bootstrap_reaches_the_broker_as_a_list_of_hosts() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1, 127.0.0.1:2,127.0.0.1:3")
    broker = make_broker(settings, client_id="test")
    # What FastStream hands to aiokafka's producer and consumers when the broker starts.
    assert broker._connection_kwargs["bootstrap_servers"] == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]


def test_a_single_host_stays_one_host() -> None:
    broker = make_broker(Settings(kafka_bootstrap="kafka:9092"), client_id="test")
    assert broker._connection_kwargs["bootstrap_servers"] == ["kafka:9092"]
