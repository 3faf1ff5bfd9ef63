"""`up`, `down`, `status` and `logs` over the three services; the CLI and the tests both call these."""

from __future__ import annotations

import asyncio
import fcntl
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from infra.settings import Settings, get_settings
from invmon.stack.kafka import KafkaService
from invmon.stack.paths import StackPaths
from invmon.stack.postgres import PostgresService
from invmon.stack.procs import StackError, tail_text
from invmon.stack.prometheus import PrometheusService
from invmon.stack.redis import RedisService
from invmon.stack.report import Reporter
from invmon.stack.service import Service, ServiceStatus
from invmon.stack.state import StackState
from invmon.stack.system import ensure_packages

__all__ = [
    "SERVICE_NAMES",
    "ServiceStatus",
    "StackError",
    "down",
    "down_async",
    "log_files",
    "restart",
    "restart_async",
    "status",
    "status_async",
    "tail",
    "up",
    "up_async",
]

SERVICE_NAMES = ("kafka", "postgres", "redis")
# Started only on request (`up --with-prometheus`); `status` and `down` include it while it is in use.
OPTIONAL_NAMES = ("prometheus",)
PROFILES = ("run", "test")


def _services(
    settings: Settings, paths: StackPaths, state: StackState, *, with_prometheus: bool = False
) -> list[Service]:
    services: list[Service] = [
        KafkaService(settings, paths, state),
        PostgresService(settings, paths, state),
        RedisService(settings, paths, state),
    ]
    prometheus = PrometheusService(settings, paths, state)
    if with_prometheus or prometheus.in_use():
        services.append(prometheus)
    return services


@contextmanager
def _locked(paths: StackPaths) -> Iterator[None]:
    """One `up` or `down` at a time per stack dir; a second one waits for the first instead of racing it."""
    paths.ensure_base()
    with paths.lock_file.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


async def _status(services: list[Service]) -> list[ServiceStatus]:
    pids = [svc.running_pid() for svc in services]
    readiness = await asyncio.gather(
        *(svc.ready() if pid is not None else _false() for svc, pid in zip(services, pids, strict=True))
    )
    return [
        ServiceStatus(name=svc.name, port=svc.port, running=pid is not None, pid=pid, ready=ready)
        for svc, pid, ready in zip(services, pids, readiness, strict=True)
    ]


async def _false() -> bool:
    return False


async def _gather_all(tasks: list[asyncio.Task[None]]) -> None:
    """Let every service finish its own steps, then report all failures (not just the first)."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if not isinstance(error, Exception):
            raise error
    if errors:
        raise StackError("\n".join(str(e) for e in errors))


async def up_async(settings: Settings, reporter: Reporter, *, with_prometheus: bool = False) -> bool:
    """Bring the stack up (with Prometheus if asked, or if it already runs); return False if it was already
    fully up (nothing done)."""
    if settings.stack_profile not in PROFILES:
        raise StackError(f"stack_profile must be one of {PROFILES}, not {settings.stack_profile!r}")
    paths = StackPaths.from_settings(settings)
    start = time.monotonic()
    with _locked(paths):
        state = StackState(paths.state_file)
        services = _services(settings, paths, state, with_prometheus=with_prometheus)
        current = await _status(services)
        if all(s.running and s.ready for s in current) and all(
            svc.config_current() for svc in services if isinstance(svc, PrometheusService)
        ):
            ports = ", ".join(f"{s.name} :{s.port}" for s in current)
            reporter.console.print(f"stack already up in {paths.root} ({ports}); nothing to do")
            return False
        reporter.console.print(f"stack up in {paths.root} (profile {settings.stack_profile})")
        await ensure_packages(reporter)
        await _gather_all([asyncio.create_task(svc.up(reporter)) for svc in services])
    reporter.console.print(f"stack up: done in {time.monotonic() - start:.2f}s")
    return True


async def down_async(
    settings: Settings, reporter: Reporter, *, purge: bool = False, only: str | None = None
) -> None:
    """Stop every service (or `only` that one, e.g. prometheus); with `purge`, delete the stack dir too."""
    if only is not None and only not in (*SERVICE_NAMES, *OPTIONAL_NAMES):
        raise StackError(f"unknown service {only!r}; one of {', '.join((*SERVICE_NAMES, *OPTIONAL_NAMES))}")
    if only is not None and purge:
        raise StackError("--purge deletes the whole stack dir: it cannot go with one service")
    paths = StackPaths.from_settings(settings)
    if not paths.root.exists():
        reporter.console.print(f"no stack in {paths.root}")
        return
    start = time.monotonic()
    with _locked(paths):
        state = StackState(paths.state_file)
        every = _services(settings, paths, state, with_prometheus=only == "prometheus")
        services = [s for s in every if only in (None, s.name)]
        await _gather_all([asyncio.create_task(svc.down(reporter)) for svc in services])
        survivors = [f"{svc.name} pid {pid}" for svc in services if (pid := svc.running_pid()) is not None]
        if survivors:
            raise StackError(f"still running after down: {', '.join(survivors)}")
        if purge:
            shutil.rmtree(paths.root)
            reporter.console.print(f"purged {paths.root}")
    reporter.console.print(f"stack down: done in {time.monotonic() - start:.2f}s")


async def restart_async(settings: Settings, reporter: Reporter, service: str) -> None:
    """Stop one service and start it again (its data kept; the `test` profile's Redis keeps none). Fault
    tests use it to restart exactly one dependency under a running pipeline."""
    if service not in SERVICE_NAMES:
        raise StackError(f"unknown service {service!r}; one of {', '.join(SERVICE_NAMES)}")
    paths = StackPaths.from_settings(settings)
    with _locked(paths):
        state = StackState(paths.state_file)
        (svc,) = [s for s in _services(settings, paths, state) if s.name == service]
        await svc.down(reporter)
        await svc.up(reporter)


async def status_async(settings: Settings) -> list[ServiceStatus]:
    paths = StackPaths.from_settings(settings)
    state = StackState(paths.state_file)
    return await _status(_services(settings, paths, state))


def up(
    settings: Settings | None = None, console: Console | None = None, *, with_prometheus: bool = False
) -> bool:
    """Start whatever is missing and wait until everything is ready. False: it was already up."""
    reporter = Reporter(console)
    return asyncio.run(up_async(settings or get_settings(), reporter, with_prometheus=with_prometheus))


def down(
    settings: Settings | None = None,
    *,
    purge: bool = False,
    console: Console | None = None,
    only: str | None = None,
) -> None:
    """Stop exactly the processes this stack started (or `only` one of them); `purge` deletes the dir too."""
    asyncio.run(down_async(settings or get_settings(), Reporter(console), purge=purge, only=only))


def restart(settings: Settings | None, service: str, console: Console | None = None) -> None:
    asyncio.run(restart_async(settings or get_settings(), Reporter(console), service))


def status(settings: Settings | None = None) -> list[ServiceStatus]:
    return asyncio.run(status_async(settings or get_settings()))


def log_files(settings: Settings, service: str | None = None) -> list[Path]:
    names = (*SERVICE_NAMES, *OPTIONAL_NAMES)
    if service is not None and service not in names:
        raise StackError(f"unknown service {service!r}; one of {', '.join(names)}")
    paths = StackPaths.from_settings(settings)
    if service is not None:
        return [paths.log(service)]
    return [paths.log(name) for name in names if name in SERVICE_NAMES or paths.log(name).exists()]


def tail(settings: Settings, service: str | None, lines: int) -> str:
    """The last `lines` lines of one service's log, or of each log under a `==> file <==` header."""
    files = log_files(settings, service)
    if service is not None:
        return tail_text(files[0], lines)
    return "\n\n".join(f"==> {path} <==\n{tail_text(path, lines)}" for path in files)
