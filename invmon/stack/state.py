"""The stack's small persistent state (Kafka cluster id, identities of the processes we started)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ProcRecord:
    """A process we started. The create time tells our process apart from a later one that reuses its pid."""

    pid: int
    create_time: float


class StackState:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    @property
    def kafka_cluster_id(self) -> str | None:
        value = self._data.get("kafka_cluster_id")
        return value if isinstance(value, str) else None

    @kafka_cluster_id.setter
    def kafka_cluster_id(self, value: str) -> None:
        self._data["kafka_cluster_id"] = value
        self._save()

    def proc(self, service: str) -> ProcRecord | None:
        raw = self._data.get("procs", {}).get(service)
        if not isinstance(raw, dict):
            return None
        return ProcRecord(pid=int(raw["pid"]), create_time=float(raw["create_time"]))

    def set_proc(self, service: str, record: ProcRecord | None) -> None:
        procs: dict[str, Any] = self._data.setdefault("procs", {})
        if record is None:
            procs.pop(service, None)
        else:
            procs[service] = {"pid": record.pid, "create_time": record.create_time}
        self._save()

    def _save(self) -> None:
        # Write-then-rename: a crash mid-write must not leave a state file that no later command can parse.
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self._path)
