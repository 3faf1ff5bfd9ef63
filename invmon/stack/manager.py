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
from invmon.stack.cluster import cluster_paths, cluster_services, layout_of, provision
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
    "service_names",
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


def _paths(settings: Settings, cluster: bool) -> StackPaths:
    return cluster_paths(settings) if cluster else StackPaths.from_settings(settings)


def _services(
    settings: Settings,
    paths: StackPaths,
    state: StackState,
    *,
    with_prometheus: bool = False,
    cluster: bool = False,
    synchronous_standby: bool = False,
) -> list[Service]:
    if cluster:
        layout = layout_of(settings)
        return cluster_services(settings, paths, state, layout, synchronous_standby=synchronous_standby)
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


async def _status(services: list[Service], *, roles: bool = False) -> list[ServiceStatus]:
    pids = [svc.running_pid() for svc in services]
    readiness = await asyncio.gather(
        *(svc.ready() if pid is not None else _false() for svc, pid in zip(services, pids, strict=True))
    )
    found = await asyncio.gather(
        *(
            _role(svc) if roles and pid is not None and ready else _none()
            for svc, pid, ready in zip(services, pids, readiness, strict=True)
        )
    )
    return [
        ServiceStatus(name=svc.name, port=svc.port, running=pid is not None, pid=pid, ready=ready, role=role)
        for svc, pid, ready, role in zip(services, pids, readiness, found, strict=True)
    ]


async def _role(service: Service) -> str | None:
    """The member's role in its replicated group, for the services that have one (see service.Service)."""
    role = getattr(service, "role", None)
    return await role() if role is not None else None


async def _false() -> bool:
    return False


async def _none() -> None:
    return None


async def _gather_all(tasks: list[asyncio.Task[None]]) -> None:
    """Let every service finish its own steps, then report all failures (not just the first)."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if not isinstance(error, Exception):
            raise error
    if errors:
        raise StackError("\n".join(str(e) for e in errors))


async def up_async(
    settings: Settings,
    reporter: Reporter,
    *,
    with_prometheus: bool = False,
    cluster: bool = False,
    synchronous_standby: bool = False,
) -> bool:
    """Bring the stack up (with Prometheus if asked, or if it already runs); return False if it was already
    fully up (nothing done). `cluster`: the replicated stack, whose topics, schema and cluster.env are
    checked on every call (cheap, and a cluster whose provisioning was interrupted gets it finished), and
    whose primary's commits wait for the standby when `synchronous_standby`, else not."""
    if settings.stack_profile not in PROFILES:
        raise StackError(f"stack_profile must be one of {PROFILES}, not {settings.stack_profile!r}")
    paths = _paths(settings, cluster)
    start = time.monotonic()
    with _locked(paths):
        state = StackState(paths.state_file)
        services = _services(
            settings,
            paths,
            state,
            with_prometheus=with_prometheus,
            cluster=cluster,
            synchronous_standby=synchronous_standby,
        )
        current = await _status(services)
        already = all(s.running and s.ready for s in current) and all(
            svc.config_current() for svc in services if isinstance(svc, PrometheusService)
        )
        if already and not cluster:
            ports = ", ".join(f"{s.name} :{s.port}" for s in current)
            reporter.console.print(f"stack already up in {paths.root} ({ports}); nothing to do")
            return False
        if already:
            reporter.console.print(f"cluster already up in {paths.root}; checking topics, schema, env")
        else:
            profile = f"profile {settings.stack_profile}" + (", cluster" if cluster else "")
            reporter.console.print(f"stack up in {paths.root} ({profile})")
            await ensure_packages(reporter)
            await _gather_all([asyncio.create_task(svc.up(reporter)) for svc in services])
        if cluster:
            await provision(settings, paths, layout_of(settings), services, reporter)
    reporter.console.print(f"stack up: done in {time.monotonic() - start:.2f}s")
    return not already


def service_names(settings: Settings, *, cluster: bool = False) -> tuple[str, ...]:
    """Every service `down`, `restart` and `logs` accept by name."""
    if not cluster:
        return (*SERVICE_NAMES, *OPTIONAL_NAMES)
    paths = cluster_paths(settings)
    return tuple(s.name for s in _services(settings, paths, StackState(paths.state_file), cluster=True))


def _check_name(settings: Settings, service: str, *, cluster: bool) -> None:
    names = service_names(settings, cluster=cluster)
    if service not in names:
        raise StackError(f"unknown service {service!r}; one of {', '.join(names)}")


async def down_async(
    settings: Settings,
    reporter: Reporter,
    *,
    purge: bool = False,
    only: str | None = None,
    cluster: bool = False,
) -> None:
    """Stop every service (or `only` that one, e.g. prometheus); with `purge`, delete the stack dir too."""
    if only is not None:
        _check_name(settings, only, cluster=cluster)
    if only is not None and purge:
        raise StackError("--purge deletes the whole stack dir: it cannot go with one service")
    paths = _paths(settings, cluster)
    if not paths.root.exists():
        reporter.console.print(f"no stack in {paths.root}")
        return
    start = time.monotonic()
    with _locked(paths):
        state = StackState(paths.state_file)
        every = _services(settings, paths, state, with_prometheus=only == "prometheus", cluster=cluster)
        services = [s for s in every if only in (None, s.name)]
        await _gather_all([asyncio.create_task(svc.down(reporter)) for svc in services])
        survivors = [f"{svc.name} pid {pid}" for svc in services if (pid := svc.running_pid()) is not None]
        if survivors:
            raise StackError(f"still running after down: {', '.join(survivors)}")
        if purge:
            shutil.rmtree(paths.root)
            reporter.console.print(f"purged {paths.root}")
    reporter.console.print(f"stack down: done in {time.monotonic() - start:.2f}s")


async def restart_async(
    settings: Settings, reporter: Reporter, service: str, *, cluster: bool = False
) -> None:
    """Stop one service and start it again (its data kept; the `test` profile's Redis keeps none). Fault
    tests use it to restart exactly one dependency under a running pipeline."""
    if cluster:
        _check_name(settings, service, cluster=True)
    elif service not in SERVICE_NAMES:
        raise StackError(f"unknown service {service!r}; one of {', '.join(SERVICE_NAMES)}")
    paths = _paths(settings, cluster)
    with _locked(paths):
        state = StackState(paths.state_file)
        (svc,) = [s for s in _services(settings, paths, state, cluster=cluster) if s.name == service]
        await svc.down(reporter)
        await svc.up(reporter)


async def status_async(settings: Settings, *, cluster: bool = False) -> list[ServiceStatus]:
    """Each service's state; with `cluster`, each member's role too (leader, standby, ...)."""
    paths = _paths(settings, cluster)
    state = StackState(paths.state_file)
    return await _status(_services(settings, paths, state, cluster=cluster), roles=cluster)


def up(
    settings: Settings | None = None,
    console: Console | None = None,
    *,
    with_prometheus: bool = False,
    cluster: bool = False,
    synchronous_standby: bool = False,
) -> bool:
    """Start whatever is missing and wait until everything is ready. False: it was already up."""
    reporter = Reporter(console)
    return asyncio.run(
        up_async(
            settings or get_settings(),
            reporter,
            with_prometheus=with_prometheus,
            cluster=cluster,
            synchronous_standby=synchronous_standby,
        )
    )


def down(
    settings: Settings | None = None,
    *,
    purge: bool = False,
    console: Console | None = None,
    only: str | None = None,
    cluster: bool = False,
) -> None:
    """Stop exactly the processes this stack started (or `only` one of them); `purge` deletes the dir too."""
    asyncio.run(
        down_async(settings or get_settings(), Reporter(console), purge=purge, only=only, cluster=cluster)
    )


def restart(
    settings: Settings | None, service: str, console: Console | None = None, *, cluster: bool = False
) -> None:
    asyncio.run(restart_async(settings or get_settings(), Reporter(console), service, cluster=cluster))


def status(settings: Settings | None = None, *, cluster: bool = False) -> list[ServiceStatus]:
    return asyncio.run(status_async(settings or get_settings(), cluster=cluster))


def log_files(settings: Settings, service: str | None = None, *, cluster: bool = False) -> list[Path]:
    if service is not None:
        _check_name(settings, service, cluster=cluster)
    paths = _paths(settings, cluster)
    if service is not None:
        return [paths.log(service)]
    if cluster:
        return [paths.log(name) for name in service_names(settings, cluster=True)]
    names = (*SERVICE_NAMES, *OPTIONAL_NAMES)
    return [paths.log(name) for name in names if name in SERVICE_NAMES or paths.log(name).exists()]


def tail(settings: Settings, service: str | None, lines: int, *, cluster: bool = False) -> str:
    """The last `lines` lines of one service's log, or of each log under a `==> file <==` header."""
    files = log_files(settings, service, cluster=cluster)
    if service is not None:
        return tail_text(files[0], lines)
    return "\n\n".join(f"==> {path} <==\n{tail_text(path, lines)}" for path in files)
