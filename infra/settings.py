"""The one settings class every process reads. Environment variables are prefixed ``INVMON_``."""

from __future__ import annotations

import ipaddress
import sys
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration for the pipeline and for the local stack that `invmon stack` manages.

    Defaults point at the local development stack on 127.0.0.1.
    """

    model_config = SettingsConfigDict(env_prefix="INVMON_", env_file=".env", extra="ignore")

    environment: Literal["production", "local"] = Field(
        "production",
        description="`production` refuses to start without real secrets; `local` (set by ./dev) relaxes "
        "that for a development machine.",
    )

    # Services the processes connect to.
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers (host:port[,...]).")
    database_url: str = Field(
        "postgresql+asyncpg://invmon:invmon@127.0.0.1:15432/invmon",
        description="SQLAlchemy URL of the PostgreSQL database (asyncpg driver).",
    )
    database_read_url: str | None = Field(
        None,
        description="SQLAlchemy URL of a read replica (a hot standby) for reads that tolerate lag: item "
        "lists and views, ledger, price history, exports, the overview, relay snapshots. Unset: the primary. "
        "An unreachable replica falls back to the primary.",
    )
    redis_url: str = Field("redis://127.0.0.1:16379/0", description="Redis URL for pub/sub and rate limits.")
    redis_sentinels: str | None = Field(
        None,
        description="Redis Sentinels (host:port[,...]): when set, every Redis client asks them for the "
        "current master instead of connecting to INVMON_REDIS_URL's host; that URL still gives the db "
        "number, user and password.",
        examples=["127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381"],
    )
    redis_sentinel_master: str = Field(
        "invmon", description="Name the Sentinels monitor the Redis master under (`sentinel monitor NAME`)."
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinels themselves (their `requirepass`); unset: none."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client talks to the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (required with SASL_PLAINTEXT / SASL_SSL)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name (required with SASL_*).")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (required with SASL_*).")
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="CA bundle (PEM) that signs the brokers' certificates (SSL / SASL_SSL; unset: the "
        "system's trust store).",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="Client certificate (PEM) for TLS client authentication (with the key file)."
    )
    kafka_ssl_keyfile: Path | None = Field(None, description="Private key (PEM) of the client certificate.")

    # Topics.
    kafka_partitions: int = Field(6, ge=1, description="Partition count for command and event topics.")
    kafka_replication_factor: int = Field(
        1,
        ge=1,
        description="Replication factor of the topics `invmon topics create` and `invmon stack up` create.",
    )
    kafka_min_insync_replicas: int = Field(
        1,
        ge=1,
        description="`min.insync.replicas` of those topics: an acks=all write needs this many replicas in "
        "sync (unclean leader election is always off).",
    )
    stock_consumer_group: str = Field(
        "invmon-stock-worker", description="Consumer group of the stock worker."
    )
    worker_max_records: int = Field(500, ge=1, description="Most records one worker batch takes from Kafka.")
    worker_batch_timeout_ms: int = Field(50, ge=0, description="How long a worker waits to fill a batch.")
    worker_commit_interval_ms: int = Field(
        100,
        ge=0,
        le=10_000,
        description="Least time between a command worker's offset commits (applied batches' offsets are "
        "merged meanwhile; after a crash they come again and are skipped as duplicates).",
    )
    worker_linger_ms: int = Field(
        3,
        ge=0,
        le=1_000,
        description="Most time a command worker waits for more records before applying a small batch, while "
        "records arrive at a steady rate (0: never). A lone command after a quiet spell never waits; "
        "fewer, larger batches cost the worker, PostgreSQL and Kafka less CPU per command.",
    )
    worker_linger_records: int = Field(
        100,
        ge=1,
        description="A command worker stops lingering once a batch has this many records "
        "(INVMON_WORKER_LINGER_MS).",
    )
    alert_clear_margin_pct: int = Field(
        10, ge=0, le=100, description="Stock alerts clear only this % of the level past the threshold."
    )
    price_consumer_group: str = Field(
        "invmon-price-worker", description="Consumer group of the price worker."
    )
    price_approval_threshold_pct: Decimal = Field(
        Decimal(20),
        ge=0,
        description="A price change moving the price by more than this % waits for approval.",
    )
    margin_floor_pct: Decimal = Field(
        Decimal(10),
        description="Margin floor in %: changes below it wait for approval; crossing it raises an alert.",
    )
    margin_clear_pts: Decimal = Field(
        Decimal(2), ge=0, description="Margin alerts clear only this many points above the floor."
    )
    price_schedule_interval_s: float = Field(
        0.25, gt=0, description="How often the price worker looks for price windows to start or end."
    )
    reservation_expiry_interval_s: float = Field(
        1.0, gt=0, description="How often the stock worker looks for expired reservations."
    )

    # Retention: time-partitioned tables lose whole partitions (db/partitions.py), never rows by DELETE.
    retention_outbox_s: int = Field(
        6 * 3600, ge=60, description="How long published outbox rows are kept (seconds)."
    )
    retention_processed_s: int = Field(
        8 * 86400,
        ge=60,
        description="How long processed command ids are kept (seconds): a command id re-sent later counts"
        " as new. Must exceed the command topics' retention.ms plus a margin, else workers refuse to start.",
    )
    command_topic_retention_s: int = Field(
        7 * 86400,
        ge=60,
        description="retention.ms (in seconds) that `invmon topics create` and `invmon stack up` set on the"
        " command topics (and re-apply to existing ones). INVMON_RETENTION_PROCESSED_S must exceed it.",
    )
    retention_notifications_s: int = Field(
        14 * 86400, ge=60, description="How long notification deliveries and attempts are kept (seconds)."
    )
    partition_span_outbox_s: int = Field(3600, ge=60, description="Time width of one outbox partition.")
    partition_span_processed_s: int = Field(
        86400, ge=60, description="Time width of one processed_commands partition (seconds)."
    )
    partition_span_notifications_s: int = Field(
        86400, ge=60, description="Time width of one notification deliveries/attempts partition (seconds)."
    )
    partition_maintenance_interval_s: float = Field(
        60.0, gt=0, description="How often partitions are created ahead and expired ones dropped (seconds)."
    )

    # Process endpoints.
    edge_host: str = Field("127.0.0.1", description="Interface the HTTP edge listens on.")
    edge_port: int = Field(8000, description="Port of the HTTP edge (API, WebSocket, /metrics).")
    metrics_enabled: bool = Field(
        True, description="Serve Prometheus /metrics on the edge and the live relay; false: neither does."
    )
    metrics_host: str | None = Field(
        None, description="Interface of the separate metrics ports (default: INVMON_EDGE_HOST)."
    )
    edge_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve the edge's /metrics on this port instead of the API port (unset: the API port).",
    )
    live_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve the live relay's /metrics on this port instead of its WebSocket port.",
    )
    edge_publish_timeout_s: float = Field(5.0, gt=0, description="How long the edge waits for a broker ack.")
    edge_wait_idle_s: float = Field(
        30.0, gt=0, description="How long the edge stays subscribed to the live feed after its last ?wait=."
    )
    stock_worker_port: int = Field(9101, description="Port of the stock worker's /metrics and /health.")
    price_worker_port: int = Field(9103, description="Port of the price worker's /metrics and /health.")
    outbox_relay_port: int = Field(9102, description="Port of the outbox relay's /metrics and /health.")
    outbox_poll_interval_s: float = Field(
        0.5, gt=0, description="Outbox relay fallback poll interval; NOTIFY wakes it sooner."
    )
    outbox_batch_size: int = Field(500, ge=1, description="Most outbox rows the relay publishes per round.")
    ops_metrics_interval_s: float = Field(
        15.0,
        gt=0,
        description="How often the outbox relay refreshes the gauges it reads from PostgreSQL and Kafka "
        "(consumer lag, outbox age, deliveries, business gauges, table sizes); never per scrape.",
    )
    notifier_port: int = Field(9104, description="Port of the notifier's /metrics and /health.")
    notifier_consumer_group: str = Field(
        "invmon-notifier", description="Consumer group of the notifier on the event stream."
    )
    notifier_batch_timeout_ms: int = Field(
        10,
        ge=1,
        description="How long the notifier waits to fill a batch of events; FastStream also sleeps this "
        "long after an empty poll, so it bounds the notifier's share of the latency.",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL people reach the edge at; email links point there."
    )
    smtp_host: str = Field("127.0.0.1", description="SMTP server the notifier sends email through.")
    smtp_port: int = Field(25, description="Port of the SMTP server.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS (required).")
    smtp_ca_file: Path | None = Field(
        None,
        description="PEM file of the CA certificates trusted for the SMTP server's STARTTLS certificate "
        "(instead of the system trust store); none: the system trust store.",
    )
    smtp_username: str | None = Field(None, description="SMTP AUTH user name (none: no AUTH).")
    smtp_password: SecretStr | None = Field(None, description="SMTP AUTH password.")
    smtp_allow_plaintext_auth: bool = Field(
        False,
        description="Allow SMTP AUTH without STARTTLS (a trusted local relay only); otherwise refused.",
    )
    smtp_from: str = Field("inventory-monitor <invmon@localhost>", description="From: of notification email.")
    smtp_timeout_s: float = Field(30.0, gt=0, description="Timeout of one SMTP conversation.")
    notify_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        description="Delay before each delivery attempt in seconds (JSON list); after the last, it fails.",
    )
    notify_retry_jitter: float = Field(0.2, ge=0, lt=1, description="Random ± fraction on each retry delay.")
    notify_batch_size: int = Field(100, ge=1, description="Most due deliveries one dispatcher round sends.")
    notify_concurrency: int = Field(32, ge=1, description="Most deliveries a notifier sends at once.")
    notify_poll_interval_s: float = Field(
        1.0, gt=0, description="Dispatcher fallback poll interval; NOTIFY wakes it sooner."
    )
    notify_admin_email: str | None = Field(
        None, description="Told by email when an endpoint is disabled (none: a log line and a metric)."
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="Timeout of one webhook request.")
    webhook_allowlist: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (JSON list) webhooks may reach although not public.",
    )
    webhook_secret_overlap_s: float = Field(
        86400.0, ge=0, description="How long a rotated-out webhook secret still signs."
    )
    webhook_disable_after_s: float = Field(
        5 * 86400.0, gt=0, description="An endpoint failing without success for this long is disabled."
    )
    jwt_secret: SecretStr | None = Field(
        None,
        description="HMAC key (HS256, at least 32 bytes) that signs access tokens. Required in production; "
        "make one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`.",
    )
    jwt_issuer: str = Field(
        "inventory-monitor", description="`iss` of issued tokens; checked on every request."
    )
    jwt_audience: str = Field("inventory-monitor-api", description="`aud` of issued tokens; checked too.")
    jwt_ttl_s: int = Field(900, ge=30, description="Lifetime of an access token in seconds.")
    login_max_age_s: int = Field(
        12 * 3600,
        ge=60,
        description="Absolute lifetime of a login: refresh never extends a session past this many seconds "
        "after the password was checked.",
    )
    principal_refresh_s: float = Field(
        10.0,
        gt=0,
        le=20,
        description="How often the edge and the relay reload which users are active: a deactivated user's "
        "tokens (and relay sockets) stop within about this long.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy addresses or networks (JSON list) whose X-Forwarded-For is believed; empty: the "
        "header is ignored and the peer address is the client.",
    )
    rate_limit_login_account: str = Field(
        "10/minute",
        description="Login attempts per account name, from any address (on top of the per-IP limit).",
    )
    rate_limit_principal: str = Field(
        "1200/minute", description="Requests each user or API key may make, shared by all edge processes."
    )
    rate_limit_ip: str = Field(
        "2400/minute", description="Requests each client IP may make (also before login)."
    )
    rate_limit_lease_ms: int = Field(
        100,
        ge=0,
        le=1000,
        description="How far ahead an edge process counts a steady caller's hits in one Redis call (at most "
        "1 % of a limit of 200 or more; a key near its limit is counted hit by hit); 0: every request is "
        "its own Redis call.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS (JSON list); never a wildcard with credentials.",
    )
    live_public_url: str = Field(
        "ws://127.0.0.1:8001/v1/live",
        pattern=r"^wss?://",
        description="WebSocket URL of the live relay as browsers reach it; the dashboard connects there.",
    )
    idempotency_ttl_s: int = Field(86400, ge=60, description="How long an Idempotency-Key answer is kept.")
    batch_max_commands: int = Field(10000, ge=1, description="Most commands one batch request may carry.")
    batch_max_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest batch request body in bytes.")
    edge_max_body_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest request body of every edge route but the batch routes, in bytes.",
    )
    live_port: int = Field(8001, description="Port of the WebSocket relay (/v1/live, /metrics, /health).")
    live_history_size: int = Field(
        10000, ge=100, description="Publications each live channel keeps in Redis for recovery (about)."
    )
    live_max_connections: int = Field(
        5000, ge=1, description="WebSocket connections one relay process accepts (then closes with 1013)."
    )
    live_max_frame_bytes: int = Field(
        65536, ge=1024, description="Largest client frame the relay reads (bigger: closed with 1009)."
    )
    live_max_messages_per_s: float = Field(
        20, gt=0, description="Client frames per second (burst: twice that) before a close with 1008."
    )
    live_queue_size: int = Field(
        1000, ge=1, description="Frames a relay client may have waiting before it is closed with 4008."
    )
    live_max_unauthenticated_per_ip: int = Field(
        20,
        ge=1,
        description="Relay sockets one client IP may hold open before sending `connect` (more: closed "
        "with 1008).",
    )
    live_login_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="A relay socket that has not sent `connect` by then is closed with 1008.",
    )
    live_ping_interval_s: float = Field(
        15, gt=0, description="Relay ping interval; no pong within two intervals closes the socket."
    )
    live_snapshot_limit: int = Field(
        10000, ge=1, description="Most rows in one subscribe snapshot (more: `truncated` is true)."
    )
    log_level: str = Field("INFO", description="Log level of every process.")
    log_json: bool | None = Field(
        None,
        description="Log JSON lines (true) or coloured human-readable lines (false); unset: console lines "
        "when stdout is a terminal, JSON otherwise.",
    )

    # Local stack (used by `invmon stack`, not by the pipeline processes).
    stack_dir: Path = Field(Path(".stack"), description="Folder that holds the local stack's state and logs.")
    stack_profile: str = Field(
        "run", description="`run` keeps PostgreSQL durable; `test` trades durability for speed."
    )
    kafka_version: str = Field("4.4.0", description="Apache Kafka broker version fetched from Maven Central.")
    kafka_controller_port: int = Field(
        19093, description="Port of the local Kafka KRaft controller listener."
    )
    kafka_heap: str = Field("512m", description="Max heap of the local Kafka broker.")
    cluster_stack_dir: Path = Field(
        Path(".stack-cluster"),
        description="Folder that holds the replicated stack's (`invmon stack up --cluster`) state and logs.",
    )
    cluster_base_port: int = Field(
        20000,
        ge=1024,
        le=64000,
        description="Base port of the replicated stack: every member listens at an offset from it "
        "(invmon/stack/cluster_layout.py). Keep it below the kernel's ephemeral range "
        "(net.ipv4.ip_local_port_range, 32768-60999 on Linux): an outgoing connection may take a port there.",
    )
    prometheus_port: int = Field(
        9090, description="Port of the local Prometheus that `invmon stack up --with-prometheus` runs."
    )
    prometheus_rules_dir: Path | None = Field(
        None,
        description="Alert rule files (*.yml) the local Prometheus loads (unset: deploy/prometheus/rules).",
    )

    @field_validator("smtp_ca_file", "smtp_username", "smtp_password", "notify_admin_email", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # compose passes an unset `${INVMON_SMTP_USERNAME:-}` on as an empty value: that means none (no AUTH,
        # no CA file), never an empty user name or the current directory as a CA file.
        return None if value == "" else value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # a typo fails at start, never trusts nothing silently
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        problem = kafka_security_problem(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    def jwt_key(self) -> str:
        """The token signing key; in local mode without one, a fixed local-only key."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if self.environment == "local":
            return LOCAL_JWT_SECRET
        raise RuntimeError(MISSING_SECRET)

    @property
    def kafka_replication(self) -> int:
        """The old name of `kafka_replication_factor`, for callers not yet renamed (the benchmarks)."""
        return self.kafka_replication_factor

    @property
    def kafka_port(self) -> int:
        return _port(self.kafka_bootstrap.split(",")[0], 9092)

    @property
    def postgres_port(self) -> int:
        return urlsplit(self.database_url).port or 5432

    @property
    def redis_port(self) -> int:
        return urlsplit(self.redis_url).port or 6379


# Every value this project ever published as a JWT secret (defaults, compose, docs): public, so refused.
LOCAL_JWT_SECRET = "local-only-jwt-secret-never-in-production-0123456789"
SAMPLE_JWT_SECRETS = frozenset(
    {
        LOCAL_JWT_SECRET,
        "dev-only-secret-change-me-0123456789abcdef",
        "compose-local-secret-change-me-0123456789",
    }
)
SAMPLE_DB_PASSWORDS = frozenset({"invmon"})
MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
MISSING_SECRET = f"INVMON_JWT_SECRET is not set: set it to a random value of 32+ bytes, e.g. `{MAKE_SECRET}`"


def production_problem(settings: Settings) -> str | None:
    """Why these settings must not run a process, in one line; None when they may. `local` skips this."""
    if settings.environment == "local":
        return None
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else ""
    if not secret:
        return MISSING_SECRET
    if secret in SAMPLE_JWT_SECRETS or "change-me" in secret.lower():
        return f"INVMON_JWT_SECRET is a published sample value: use a random one, e.g. `{MAKE_SECRET}`"
    if len(secret.encode()) < 32:
        return f"INVMON_JWT_SECRET is shorter than 32 bytes: use a random value, e.g. `{MAKE_SECRET}`"
    password = urlsplit(settings.database_url).password
    if password is not None and unquote(password) in SAMPLE_DB_PASSWORDS:
        return (
            "INVMON_DATABASE_URL uses the sample password `invmon`: give the database user a random password "
            "and put it in the URL"
        )
    return None


def refuse_unsafe_settings(settings: Settings) -> None:
    """Called first by every process's entry point and by the CLI commands that issue credentials: in
    production, unsafe settings end the process with one line on stderr and exit status 2."""
    problem = production_problem(settings)
    if problem is not None:
        print(f"refusing to start (INVMON_ENVIRONMENT=production): {problem}", file=sys.stderr)
        raise SystemExit(2)


def kafka_security_problem(settings: Settings) -> str | None:
    """Why the Kafka security settings cannot make a client (None: they can). Checked when settings load,
    so a typo stops the process at start instead of as a broker that never answers."""
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_"):
        missing = [
            f"INVMON_KAFKA_SASL_{name.upper()}"
            for name, value in (
                ("mechanism", settings.kafka_sasl_mechanism),
                ("username", settings.kafka_sasl_username),
                ("password", settings.kafka_sasl_password),
            )
            if not value
        ]
        if missing:
            return f"INVMON_KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}"
    tls = (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    if not protocol.endswith("SSL") and any(tls):
        return f"INVMON_KAFKA_SSL_* files are set but INVMON_KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS"
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        return "INVMON_KAFKA_SSL_CERTFILE and INVMON_KAFKA_SSL_KEYFILE go together"
    for name, path in zip(("CAFILE", "CERTFILE", "KEYFILE"), tls, strict=True):
        if path is not None and not path.is_file():
            return f"INVMON_KAFKA_SSL_{name}={path}: no such file"
    return None


def _port(hostport: str, default: int) -> int:
    _, _, port = hostport.rpartition(":")
    return int(port) if port.isdigit() else default


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this process; read once, at wiring time."""
    return Settings()
