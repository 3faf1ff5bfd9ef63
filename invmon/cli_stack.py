"""`invmon stack ...`: run the local Kafka, PostgreSQL and Redis stack (wired into `invmon` by invmon.cli)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra.settings import Settings, get_settings
from invmon.stack import manager
from invmon.stack.cluster import cluster_paths, rss_bytes
from invmon.stack.cluster_layout import ENV_FILE
from invmon.stack.manager import StackError

stack_app = typer.Typer(
    name="stack",
    help="Run the local stack (Kafka, PostgreSQL, Redis; Prometheus on request) on 127.0.0.1, all state "
    "under INVMON_STACK_DIR; with --cluster the replicated stack (3 Kafka nodes, PostgreSQL primary and "
    "standby, Redis) on the ports of INVMON_CLUSTER_BASE_PORT, all state under INVMON_CLUSTER_STACK_DIR.",
    no_args_is_help=True,
)
ClusterOption = Annotated[
    bool,
    typer.Option(
        "--cluster",
        help="The replicated stack (state in INVMON_CLUSTER_STACK_DIR, ports from INVMON_CLUSTER_BASE_PORT).",
    ),
]
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(exc: StackError) -> typer.Exit:
    # Messages quote logs and commands, whose brackets must not be read as rich markup.
    err_console.print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(code=1)


@stack_app.command()
def up(
    with_prometheus: Annotated[
        bool,
        typer.Option(
            "--with-prometheus",
            help="Also run Prometheus on 127.0.0.1:INVMON_PROMETHEUS_PORT with deploy/prometheus's rules.",
        ),
    ] = False,
    cluster: ClusterOption = False,
    synchronous_standby: Annotated[
        bool,
        typer.Option(
            "--synchronous-standby",
            help="With --cluster: the primary's commits wait until the standby has them (a dead standby "
            "then blocks writes); without it they do not. Applied to a running primary too.",
        ),
    ] = False,
) -> None:
    """Install what is missing, start every service, wait until ready, create topics/role/db. Idempotent.
    With --cluster also migrate the primary, write <cluster dir>/cluster.env and print every member."""
    if with_prometheus and cluster:
        raise _fail(StackError("--with-prometheus runs with the single-node stack only"))
    if synchronous_standby and not cluster:
        raise _fail(StackError("--synchronous-standby needs --cluster"))
    settings = get_settings()
    try:
        manager.up(
            settings,
            console,
            with_prometheus=with_prometheus,
            cluster=cluster,
            synchronous_standby=synchronous_standby,
        )
        if cluster:
            _print_status(settings, manager.status(settings, cluster=True), memory=True)
            console.print(
                f"environment for `invmon run --cluster`: {cluster_paths(settings).root / ENV_FILE}"
            )
    except StackError as exc:
        raise _fail(exc) from exc


@stack_app.command()
def down(
    service: Annotated[
        str | None, typer.Argument(help="Stop only this one (e.g. prometheus); default: all of them.")
    ] = None,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the stack dir (all data and logs).")
    ] = False,
    cluster: ClusterOption = False,
) -> None:
    """Stop exactly the processes this stack started (data is kept unless --purge)."""
    try:
        manager.down(get_settings(), purge=purge, console=console, only=service, cluster=cluster)
    except StackError as exc:
        raise _fail(exc) from exc


@stack_app.command()
def restart(
    service: Annotated[
        str, typer.Argument(help="kafka, postgres or redis (--cluster: a member's name, e.g. kafka-2).")
    ],
    cluster: ClusterOption = False,
) -> None:
    """Stop one service and start it again (fault drills; the test profile's Redis comes back empty)."""
    try:
        manager.restart(get_settings(), service, console, cluster=cluster)
    except StackError as exc:
        raise _fail(exc) from exc


@stack_app.command()
def status(cluster: ClusterOption = False) -> None:
    """One line per service (--cluster: with its role and memory). Exit code 0 when every service is
    running and ready, 1 otherwise."""
    settings = get_settings()
    try:
        rows = manager.status(settings, cluster=cluster)
    except StackError as exc:
        raise _fail(exc) from exc
    _print_status(settings, rows, memory=cluster)
    raise typer.Exit(code=0 if all(r.running and r.ready for r in rows) else 1)


def _print_status(settings: Settings, rows: list[manager.ServiceStatus], *, memory: bool) -> None:
    roles = any(row.role is not None for row in rows)
    table = Table(box=None, pad_edge=False)
    columns = ["service", "port", "state", "pid", "ready"]
    columns += ["role"] if roles else []
    columns += ["rss"] if memory else []
    for column in columns:
        table.add_column(column)
    total = 0
    for row in rows:
        cells = [
            row.name,
            str(row.port),
            "running" if row.running else "stopped",
            str(row.pid) if row.pid is not None else "-",
            "yes" if row.ready else "no",
        ]
        if roles:
            cells.append(escape(row.role or "-"))
        if memory:
            rss = rss_bytes(row.pid) if row.pid is not None else 0
            total += rss
            cells.append(f"{rss / 2**20:.0f} MiB" if rss else "-")
        table.add_row(*cells)
    # A member's role stays on one line however narrow the terminal (or CI's 80 columns).
    out = Console(highlight=False, soft_wrap=True, width=max(console.width, 140)) if roles else console
    out.print(table)
    if memory:
        console.print(f"resident memory of all members: {total / 2**20:.0f} MiB")


@stack_app.command()
def logs(
    service: Annotated[
        str | None, typer.Argument(help="kafka, postgres, redis or prometheus (default: all).")
    ] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="Lines to show from the end.")] = 50,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines (Ctrl-C stops).")
    ] = False,
    cluster: ClusterOption = False,
) -> None:
    """Show the end of a service's log file (or of all of them)."""
    settings = get_settings()
    try:
        files = manager.log_files(settings, service, cluster=cluster)
    except StackError as exc:
        raise _fail(exc) from exc
    if follow:
        # tail -F already follows several files, survives truncation and waits for files not yet created.
        sys.stdout.flush()
        os.execvp("tail", ["tail", "-n", str(lines), "-F", *map(str, files)])
    # Logs are raw text: printed as is, never parsed as rich markup.
    sys.stdout.write(manager.tail(settings, service, lines, cluster=cluster) + "\n")


if __name__ == "__main__":
    stack_app()
