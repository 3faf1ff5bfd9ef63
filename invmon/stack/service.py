"""What the manager needs from each service, and what `status` reports about it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from invmon.stack.paths import StackPaths
from invmon.stack.procs import (
    StackError,
    find_ours,
    read_pidfile,
    record_of,
    run,
    spawn_detached,
    tail_text,
    terminate,
    wait_until,
    write_pidfile,
)
from invmon.stack.report import Reporter
from invmon.stack.state import StackState


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    port: int
    running: bool
    pid: int | None
    ready: bool
    # A member's part in its replicated group ("controller leader", "standby (lag 0 bytes)", ...): a
    # service may define `async def role(self) -> str | None`; only the cluster's status asks for it.
    role: str | None = None


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


async def stop_ours(
    reporter: Reporter,
    state: StackState,
    name: str,
    pid: int | None,
    markers: Sequence[str],
    pidfile: Path,
    *,
    timeout_s: float,
    timed_out: str = "killed (SIGTERM timed out)",
) -> None:
    """Stop by SIGTERM (SIGKILL after `timeout_s`) the server this stack started, if it still runs and is
    ours, then forget it: the way every service but PostgreSQL (pg_ctl) stops."""
    if pid is None:
        reporter.note(name, "not running")
    else:
        with reporter.step(name, f"stop pid {pid}") as step:
            proc = find_ours(pid, markers)
            if proc is not None and not await terminate(proc, timeout_s):
                step.outcome = timed_out
    state.set_proc(name, None)
    await asyncio.to_thread(pidfile.unlink, missing_ok=True)


async def start_detached(
    state: StackState, paths: StackPaths, name: str, cmd: Sequence[str], cwd: Path
) -> None:
    """Start a server that runs in the foreground of its own session (spawn_detached), with its output in
    its log, and record it as ours: the way every service but PostgreSQL (pg_ctl) and Redis (a daemon that
    writes its own pid file) starts."""
    log = paths.log(name)
    pid = await spawn_detached(cmd, log=log, cwd=cwd)
    write_pidfile(paths.pidfile(name), pid)
    record = record_of(pid)
    if record is None:
        raise StackError(f"{name} exited right after start:\n{tail_text(log, 30)}")
    state.set_proc(name, record)


async def start_daemon(
    state: StackState, name: str, cmd: Sequence[str], cwd: Path, pidfile: Path, log: Path, *, timeout_s: float
) -> None:
    """Start a server that daemonises and writes its own pid file (redis-server, redis-sentinel), and record
    it as ours."""
    await asyncio.to_thread(pidfile.unlink, missing_ok=True)
    # Returns once the daemon has forked; the pid file appears a moment later.
    await run(cmd, cwd=cwd, what=name)

    async def written() -> bool:
        return read_pidfile(pidfile) is not None

    await wait_until(written, what=f"{name} pid file", timeout_s=timeout_s)
    pid = read_pidfile(pidfile)
    record = record_of(pid) if pid is not None else None
    if record is None:
        raise StackError(f"{name} exited right after start; see {log}")
    state.set_proc(name, record)


def exit_report(paths: StackPaths, name: str, pid: int | None) -> str | None:
    """For `wait_until(abort=...)`: None while the server runs, else the end of its log."""
    return None if pid is not None else f"exited:\n{tail_text(paths.log(name), 30)}"
