"""What the manager needs from each service, and what `status` reports about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from invmon.stack.report import Reporter


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    port: int
    running: bool
    pid: int | None
    ready: bool


class Service(Protocol):
    name: str

    @property
    def port(self) -> int: ...

    def running_pid(self) -> int | None:
        """Pid of the server if it is running and is the one this stack started."""
        ...

    async def ready(self) -> bool:
        """True when a client can use the service the way the pipeline will (a cheap, bounded probe)."""
        ...

    async def up(self, reporter: Reporter) -> None:
        """Install, initialise, start and provision whatever is missing; a no-op when already up."""
        ...

    async def down(self, reporter: Reporter) -> None:
        """Stop the server this stack started, if any; never touch anything else."""
        ...
