"""Where every member of the replicated stack (`invmon stack up --cluster`) listens, from one base port.

The layout is a pure function of the base port, so the stack manager, `invmon run --cluster`, the drills
and the docs agree on it without reading each other's state.
"""

from __future__ import annotations

from dataclasses import dataclass

HOST = "127.0.0.1"
KAFKA_NODES = 3
PROCESS_COPIES = 2  # of every pipeline process under `invmon run --cluster`
SENTINELS = 3
SENTINEL_MASTER = "invmon"
DATABASE = "invmon"
DATABASE_USER = "invmon"
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
# In the cluster state dir: written by `invmon stack up --cluster`, read by `invmon run --cluster`.
ENV_FILE = "cluster.env"

# The port offset of each process's API, health or metrics port; copy i adds 10 * i.
_PROCESS_OFFSETS = {
    "edge": 800,
    "live_relay": 801,
    "stock_worker": 101,
    "outbox_relay": 102,
    "price_worker": 103,
    "notifier": 104,
}
# The setting that carries that port, per process.
PORT_SETTINGS = {
    "edge": "INVMON_EDGE_PORT",
    "live_relay": "INVMON_LIVE_PORT",
    "stock_worker": "INVMON_STOCK_WORKER_PORT",
    "outbox_relay": "INVMON_OUTBOX_RELAY_PORT",
    "price_worker": "INVMON_PRICE_WORKER_PORT",
    "notifier": "INVMON_NOTIFIER_PORT",
}


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    base: int

    def kafka_port(self, node: int) -> int:
        """Client listener of Kafka node `node` (0, 1, 2); each node is broker and controller."""
        return self.base + 92 + 100 * node

    def kafka_controller_port(self, node: int) -> int:
        return self.base + 93 + 100 * node

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"{HOST}:{self.kafka_port(n)}" for n in range(KAFKA_NODES))

    @property
    def controller_quorum(self) -> str:
        """KRaft `controller.quorum.voters`: node id n + 1 at its controller port."""
        return ",".join(f"{n + 1}@{HOST}:{self.kafka_controller_port(n)}" for n in range(KAFKA_NODES))

    @property
    def postgres_primary_port(self) -> int:
        return self.base + 432

    @property
    def postgres_standby_port(self) -> int:
        return self.base + 433

    @property
    def redis_primary_port(self) -> int:
        return self.base + 379

    @property
    def redis_replica_port(self) -> int:
        return self.base + 380

    def sentinel_port(self, n: int) -> int:
        return self.base + 381 + n

    @property
    def sentinels(self) -> str:
        return ",".join(f"{HOST}:{self.sentinel_port(n)}" for n in range(SENTINELS))

    @property
    def nginx_port(self) -> int:
        """The one front door: the edges' API and the relays' /v1/live behind it."""
        return self.base + 80

    def process_port(self, process: str, copy: int) -> int:
        return self.base + _PROCESS_OFFSETS[process] + 10 * copy

    def database_url(self, port: int, password: str) -> str:
        return f"postgresql+asyncpg://{DATABASE_USER}:{password}@{HOST}:{port}/{DATABASE}"

    def env(self, database_password: str) -> dict[str, str]:
        """What every pipeline process of the cluster shares (`invmon run --cluster` adds its own port)."""
        front = f"{HOST}:{self.nginx_port}"
        return {
            "INVMON_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "INVMON_KAFKA_REPLICATION_FACTOR": str(REPLICATION_FACTOR),
            "INVMON_KAFKA_MIN_INSYNC_REPLICAS": str(MIN_INSYNC_REPLICAS),
            "INVMON_DATABASE_URL": self.database_url(self.postgres_primary_port, database_password),
            "INVMON_DATABASE_READ_URL": self.database_url(self.postgres_standby_port, database_password),
            "INVMON_REDIS_URL": f"redis://{HOST}:{self.redis_primary_port}/0",
            "INVMON_REDIS_SENTINELS": self.sentinels,
            "INVMON_REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
            "INVMON_PUBLIC_URL": f"http://{front}",
            "INVMON_LIVE_PUBLIC_URL": f"ws://{front}/v1/live",
        }

    def process_env(self, process: str, copy: int, database_password: str) -> dict[str, str]:
        return {**self.env(database_password), PORT_SETTINGS[process]: str(self.process_port(process, copy))}
