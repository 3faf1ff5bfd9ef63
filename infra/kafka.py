"""Kafka client setup shared by the edge and the workers: the safe settings live here, once."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from infra.settings import Settings

# Every producer: wait for all in-sync replicas, and let the broker drop retried duplicates.
PRODUCER_ACKS = "all"
PRODUCER_IDEMPOTENT = True
# Chooses a record's partition from its key (murmur2, as Java clients do). The edge's producer uses it, and
# so does the edge's batch path, which fills one record batch per partition itself.
PARTITIONER = DefaultPartitioner()
# Record batch size (the default is 16 KiB): the edge's batch intake fills whole batches, ~1,500 commands each
# at this size; below the broker's default message.max.bytes (1 MiB).
BATCH_BYTES = 512 * 1024

# What a record batch may hold (`max.message.bytes`), set on every topic we create. A command topic keeps
# Kafka's default. A producer that compresses its batches can still put a record on it whose value is many
# times this size: whatever cannot travel in full to the DLQ goes there by reference (workers/intake.py).
COMMAND_TOPIC_MAX_BYTES = 1_048_588
# The DLQ carries any record the command topic took uncompressed, plus our headers (the reason is cut at
# 2,000 characters, the origin is ~100 bytes): the headroom below. Larger, compressible values fit too: the
# DLQ producer compresses (gzip: the only codec aiokafka has without extra libraries) and may send requests
# up to the DLQ topic's limit (aiokafka checks the uncompressed size against `max_request_size`).
DLQ_HEADROOM_BYTES = 64 * 1024
DLQ_TOPIC_MAX_BYTES = 4 * 1024 * 1024
DLQ_COMPRESSION = "gzip"


def client_security(settings: Settings) -> dict[str, Any]:
    """The aiokafka keyword arguments of INVMON_KAFKA_SECURITY_PROTOCOL and its SASL / TLS settings, for
    every client we build (producers, consumers, admin clients). The settings class has already refused an
    incomplete combination (`infra.settings.kafka_security_problem`)."""
    protocol = settings.kafka_security_protocol
    found: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        found["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = settings.kafka_sasl_password
        found["sasl_mechanism"] = settings.kafka_sasl_mechanism
        found["sasl_plain_username"] = settings.kafka_sasl_username
        found["sasl_plain_password"] = password.get_secret_value() if password is not None else None
    return found


def broker_security(settings: Settings) -> BaseSecurity | None:
    """`client_security` in FastStream's terms: its KafkaBroker takes a security object, which it turns
    back into the same aiokafka arguments (faststream.kafka.security)."""
    found = client_security(settings)
    protocol, context = found["security_protocol"], found.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    return kind[found["sasl_mechanism"]](
        found["sasl_plain_username"],
        found["sasl_plain_password"],
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


_REFUSED = (SaslAuthenticationFailed, UnsupportedSaslMechanismError, IllegalSaslStateError)


async def access_problem(settings: Settings, timeout_ms: int = 10_000) -> str | None:
    """Why these settings cannot talk to the brokers, in one line (None: the first broker that answered
    took them). aiokafka's clients only say "Unable to bootstrap" and leave the cause (a refused password,
    a certificate that does not verify) in a log line: this connects to each bootstrap broker itself to
    name it. For a process that failed to start its clients, and for the CLI."""
    security = client_security(settings)
    last = "no bootstrap server"
    for server in bootstrap_servers(settings):
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(host, int(port), request_timeout_ms=timeout_ms, **security)
        except _REFUSED as error:
            return (
                f"Kafka at {server} refused INVMON_KAFKA_SASL_USERNAME={settings.kafka_sasl_username!r} "
                f"({settings.kafka_sasl_mechanism}): {error}; check INVMON_KAFKA_SASL_PASSWORD"
            )
        except ssl.SSLError as error:
            return (
                f"TLS with Kafka at {server} failed: {error}; check INVMON_KAFKA_SSL_CAFILE (the CA that "
                "signs the brokers' certificates) and INVMON_KAFKA_SECURITY_PROTOCOL"
            )
        except (KafkaError, OSError, TimeoutError) as error:
            last = f"{server}: {type(error).__name__}: {error}"
            continue
        conn.close()
        return None
    return f"no Kafka broker of INVMON_KAFKA_BOOTSTRAP answered ({last})"


class KafkaAccessError(RuntimeError):
    """The clients could not start, with the cause `access_problem` found."""


@asynccontextmanager
async def explained(settings: Settings) -> AsyncIterator[None]:
    """Around starting Kafka clients: a failure to bootstrap comes out as KafkaAccessError naming its
    cause (wrong password, untrusted certificate, nothing listening) instead of "Unable to bootstrap"."""
    try:
        yield
    except KafkaConnectionError as error:
        problem = await access_problem(settings)
        raise KafkaAccessError(problem or f"{type(error).__name__}: {error}") from error


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """The bytes one record takes in a record batch of its own, what a topic's `max.message.bytes` and a
    producer's `max_request_size` are held against (uncompressed)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


def topic_configs(*, compacted: bool, dead_letters: bool, retention_s: int | None = None) -> dict[str, str]:
    """The configs the project sets on a topic it creates (and re-applies to one that exists).
    `retention_s`: the command topics' (INVMON_COMMAND_TOPIC_RETENTION_S), which processed ids outlive."""
    configs = {"max.message.bytes": str(DLQ_TOPIC_MAX_BYTES if dead_letters else COMMAND_TOPIC_MAX_BYTES)}
    if compacted:
        configs["cleanup.policy"] = "compact"
    if retention_s is not None:
        configs["retention.ms"] = str(retention_s * 1000)
    return configs


async def read_topic_configs(settings: Settings, names: list[str]) -> dict[str, dict[str, str]]:
    """The effective configs of the named topics (defaults included), as the broker reports them."""
    client = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000, **client_security(settings)
    )
    await client.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        responses = await client.describe_configs(resources)
    finally:
        await client.close()
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for name, entries in _config_entries(response):
            found[name] = entries
    return found


def _config_entries(response: object) -> list[tuple[str, dict[str, str]]]:
    # aiokafka returns the raw protocol objects: resources of (error_code, error_message, type, name,
    # [(config_name, value, ...), ...]).
    out = []
    for resource in response.resources:  # type: ignore[attr-defined]
        error_code, _, _, name, entries = resource[:5]
        if int(error_code) == 0:
            out.append((str(name), {str(e[0]): str(e[1]) for e in entries if e[1] is not None}))
    return out


def dlq_cannot_carry(configs: dict[str, dict[str, str]], command_topic: str, dlq_topic: str) -> str | None:
    """Why the DLQ cannot carry every record the command topic accepts uncompressed (None: it can)."""
    if command_topic not in configs or dlq_topic not in configs:
        missing = [t for t in (command_topic, dlq_topic) if t not in configs]
        return f"topic(s) {', '.join(missing)} not found"
    accepted = int(configs[command_topic].get("max.message.bytes", COMMAND_TOPIC_MAX_BYTES))
    carried = int(configs[dlq_topic].get("max.message.bytes", 0))
    needed = accepted + DLQ_HEADROOM_BYTES
    if carried < needed or needed > DLQ_TOPIC_MAX_BYTES:
        return (
            f"{dlq_topic} max.message.bytes={carried} (producer max_request_size="
            f"{DLQ_TOPIC_MAX_BYTES}) cannot carry what {command_topic} accepts ({accepted}) plus "
            f"{DLQ_HEADROOM_BYTES} bytes of DLQ headers; `invmon topics create` applies the topic configs"
        )
    return None


@dataclass(frozen=True, slots=True)
class ConsumerSafety:
    """Consumer options for a command log: offsets move only after our own commit, start at the beginning."""

    ack_policy: AckPolicy = AckPolicy.MANUAL
    auto_offset_reset: Literal["earliest"] = "earliest"


CONSUMER_SAFETY = ConsumerSafety()


def bootstrap_servers(settings: Settings) -> list[str]:
    """INVMON_KAFKA_BOOTSTRAP as a list of host:port. FastStream wraps a string in a list, so a
    comma-separated string would reach aiokafka as one unresolvable host name (aiokafka's own clients split
    it themselves)."""
    return [host.strip() for host in settings.kafka_bootstrap.split(",") if host.strip()]


def make_broker(
    settings: Settings, *, client_id: str, description: str | None = None, linger_ms: int = 2
) -> KafkaBroker:
    """A broker whose producer is safe for commands and events. Connects only when started."""
    return KafkaBroker(
        bootstrap_servers(settings),
        client_id=client_id,
        acks=PRODUCER_ACKS,
        enable_idempotence=PRODUCER_IDEMPOTENT,
        allow_auto_create_topics=False,
        linger_ms=linger_ms,
        logger=logging.getLogger(f"invmon.{client_id}"),
        description=description,
        security=broker_security(settings),
    )


def raw_producer(
    settings: Settings, *, client_id: str, dead_letters: bool = False, max_request_size: int | None = None
) -> AIOKafkaProducer:
    """A plain aiokafka producer with the same safe settings, for records whose header bytes must pass
    through untouched (FastStream's publish takes headers as a str dict). Started by its lifespan.
    `dead_letters`: compressed, with requests as large as a DLQ topic takes."""
    extra: dict[str, object] = (
        {"compression_type": DLQ_COMPRESSION, "max_request_size": DLQ_TOPIC_MAX_BYTES} if dead_letters else {}
    )
    if max_request_size is not None:
        extra["max_request_size"] = max_request_size
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks=PRODUCER_ACKS,
        enable_idempotence=PRODUCER_IDEMPOTENT,
        linger_ms=2,
        partitioner=PARTITIONER,
        max_batch_size=BATCH_BYTES,
        **extra,
        **client_security(settings),
    )


def unsafe_settings(broker: KafkaBroker) -> list[str]:
    """What makes this started broker unsafe for a command log (empty: safe).

    Reads the aiokafka objects FastStream built, so a changed default upstream shows up at start-up rather
    than as lost commands. Private attributes are read on purpose: they are the only record of what the
    clients were really configured with.
    """
    problems: list[str] = []
    for subscriber in broker.subscribers:
        args = getattr(subscriber, "_connection_args", {})
        if args.get("enable_auto_commit") is not False:
            problems.append(f"{subscriber}: auto-commit is on (offsets would move before processing)")
        if args.get("auto_offset_reset") != CONSUMER_SAFETY.auto_offset_reset:
            problems.append(f"{subscriber}: auto_offset_reset is {args.get('auto_offset_reset')!r}")
        consumer = getattr(subscriber, "consumer", None)
        if consumer is not None and getattr(consumer, "_enable_auto_commit", True):
            problems.append(f"{subscriber}: the running consumer auto-commits")
    producer = aiokafka_producer(broker)
    if producer is None:
        problems.append("no producer: the broker is not connected")
    else:
        if getattr(producer._sender, "_acks", None) != -1:
            problems.append(f"producer acks={producer._sender._acks!r}, want all (-1)")
        if producer._txn_manager is None:
            problems.append("producer is not idempotent")
    return problems


def aiokafka_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The connected broker's own aiokafka producer (None before it connects). FastStream keeps it in
    private attributes: this is the one place that reaches into them."""
    producer: AIOKafkaProducer | None = getattr(
        getattr(getattr(broker.config, "producer", None), "_producer", None), "producer", None
    )
    return producer


def require_safe(broker: KafkaBroker) -> None:
    problems = unsafe_settings(broker)
    if problems:
        raise RuntimeError("unsafe Kafka client settings: " + "; ".join(problems))
