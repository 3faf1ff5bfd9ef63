"""Where a stack keeps its state, logs and pid files: all of it under one absolute directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.settings import Settings


@dataclass(frozen=True, slots=True)
class StackPaths:
    root: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> StackPaths:
        # Resolved once, against the cwd of the invoking process: the services themselves start in other
        # directories and every path handed to them must be absolute.
        return cls(root=(Path.cwd() / settings.stack_dir).resolve())

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def pidfile(self, service: str) -> Path:
        return self.run / f"{service}.pid"

    # Kafka: jars per version (a version switch keeps the old download), one data dir.
    def kafka_libs(self, version: str) -> Path:
        return self.root / "kafka" / version / "libs"

    @property
    def kafka_config(self) -> Path:
        return self.root / "kafka" / "config"

    @property
    def kafka_data(self) -> Path:
        return self.root / "kafka" / "data"

    @property
    def maven_project(self) -> Path:
        return self.root / "kafka" / "maven"

    # PostgreSQL: the postgres user owns everything below pg_root.
    @property
    def pg_root(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_root / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_root / "run"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    def ensure_base(self) -> None:
        for path in (self.root, self.logs, self.run):
            path.mkdir(parents=True, exist_ok=True)
