"""`invmon status`: one screen of the pipeline's health for an operator at a terminal.

Each process's /health/ready (ports from the settings), consumer lag per group (infra.consumer_lag), the
outbox, dead letters and failing deliveries (db.ops_reads), and the live relay's WebSocket clients (from its
/metrics). Every source is read on its own with a timeout: whatever is down is shown as down, the rest
still shows. `--watch` redraws it every `--interval` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

import asyncpg
import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from db import ops_reads
from db.outbox_repo import asyncpg_dsn
from infra.consumer_lag import PartitionLag, consumer_lag
from infra.settings import Settings, get_settings

T = TypeVar("T")
SOURCE_TIMEOUT_S = 5.0
FAILING_SHOWN = 8
# Addresses a process binds to but a client cannot connect to: the loopback instead.
WILDCARD_HOSTS = ("", "0.0.0.0", "::")

State = Literal["ready", "unready", "down"]


@dataclass(frozen=True, slots=True)
class Health:
    process: str
    port: int
    state: State
    detail: str  # the failing checks, or why it is down


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    partitions: int
    total: int
    max_lag: int
    max_partition: str  # "topic/partition" of the largest lag


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: datetime
    health: list[Health]
    lag: list[GroupLag] | str  # a string: why it could not be read
    outbox: ops_reads.OutboxBacklog | str
    dead_letters: dict[str, int] | str
    failing: list[ops_reads.FailingDelivery] | str
    ws_clients: float | str


def process_ports(settings: Settings) -> dict[str, int]:
    """Every process (the Procfile's names) and the port its /health answers on."""
    return {
        "edge": settings.edge_port,
        "stock_worker": settings.stock_worker_port,
        "price_worker": settings.price_worker_port,
        "outbox_relay": settings.outbox_relay_port,
        "notifier": settings.notifier_port,
        "live_relay": settings.live_port,
    }


def local_host(settings: Settings) -> str:
    return "127.0.0.1" if settings.edge_host in WILDCARD_HOSTS else settings.edge_host


def summarise_lag(lags: list[PartitionLag]) -> list[GroupLag]:
    by_group: dict[str, list[PartitionLag]] = {}
    for lag in lags:
        by_group.setdefault(lag.group, []).append(lag)
    out = []
    for group, parts in sorted(by_group.items()):
        worst = max(parts, key=lambda p: p.lag)
        out.append(
            GroupLag(
                group, len(parts), sum(p.lag for p in parts), worst.lag, f"{worst.topic}/{worst.partition}"
            )
        )
    return out


async def probe(client: httpx.AsyncClient, host: str, process: str, port: int) -> Health:
    try:
        response = await client.get(f"http://{host}:{port}/health/ready")
    except httpx.ConnectError:
        return Health(process, port, "down", "nothing listening")
    except httpx.TimeoutException:
        return Health(process, port, "down", "no answer within 2 s")
    except httpx.HTTPError as error:
        return Health(process, port, "down", type(error).__name__)
    if response.status_code == 200:
        return Health(process, port, "ready", "")
    try:
        checks = response.json().get("checks", {})
        failing = ", ".join(f"{name}: {result}" for name, result in checks.items() if result != "ok")
    except ValueError:
        failing = ""
    return Health(process, port, "unready", failing or f"HTTP {response.status_code}")


async def ws_clients(client: httpx.AsyncClient, settings: Settings) -> float | str:
    host = settings.metrics_host or local_host(settings)
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    port = settings.live_metrics_port or settings.live_port
    try:
        response = await client.get(f"http://{host}:{port}/metrics")
    except httpx.ConnectError:
        return "live relay down"
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        if family.name == "invmon_relay_clients":
            return float(sum(s.value for s in family.samples))
    raise LookupError("invmon_relay_clients not exported")


async def _guard(read: Callable[[], Awaitable[T]]) -> T | str:
    try:
        return await asyncio.wait_for(read(), SOURCE_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {SOURCE_TIMEOUT_S:g} s"
    except Exception as error:  # shown on the screen: one source down must not hide the others
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@dataclass(frozen=True, slots=True)
class DatabaseReads:
    outbox: ops_reads.OutboxBacklog
    dead_letters: dict[str, int]
    failing: list[ops_reads.FailingDelivery]


async def database_reads(settings: Settings) -> DatabaseReads:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url), timeout=SOURCE_TIMEOUT_S)
    try:
        return DatabaseReads(
            await ops_reads.outbox_backlog(conn),
            await ops_reads.dead_letters_by_reason(conn),
            await ops_reads.failing_deliveries(conn, FAILING_SHOWN),
        )
    finally:
        await conn.close()


async def gather(settings: Settings) -> Snapshot:
    host = local_host(settings)
    async with httpx.AsyncClient(timeout=2.0) as client:
        health, lag, db, clients = await asyncio.gather(
            asyncio.gather(*(probe(client, host, p, port) for p, port in process_ports(settings).items())),
            _guard(lambda: consumer_lag(settings)),
            _guard(lambda: database_reads(settings)),
            _guard(lambda: ws_clients(client, settings)),
        )
    return Snapshot(
        at=datetime.now(UTC),
        health=list(health),
        lag=lag if isinstance(lag, str) else summarise_lag(lag),
        outbox=db if isinstance(db, str) else db.outbox,
        dead_letters=db if isinstance(db, str) else db.dead_letters,
        failing=db if isinstance(db, str) else db.failing,
        ws_clients=clients,
    )


# --- rendering (pure) -----------------------------------------------------------------------------------

_STATE_STYLE = {"ready": ("●", "green"), "unready": ("●", "yellow"), "down": ("●", "red")}


def _unavailable(reason: str) -> Text:
    return Text(f"unavailable: {reason}", style="red")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _health_table(health: list[Health]) -> Table:
    table = Table(title="Processes", title_justify="left", box=box.SIMPLE_HEAD, title_style="bold")
    for column in ("process", "port", "state", "detail"):
        table.add_column(column, no_wrap=column != "detail")
    for h in health:
        mark, style = _STATE_STYLE[h.state]
        table.add_row(h.process, str(h.port), Text(f"{mark} {h.state}", style=style), h.detail)
    return table


def _lag_table(lag: list[GroupLag] | str) -> RenderableType:
    if isinstance(lag, str):
        return Group(Text("Consumer lag", style="italic"), _unavailable(lag))
    table = Table(title="Consumer lag", title_justify="left", box=box.SIMPLE_HEAD, title_style="bold")
    for column, justify in (("group", "left"), ("partitions", "right"), ("total", "right"), ("max", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("worst partition")
    for g in lag:
        style = "yellow" if g.total else ""
        worst = g.max_partition if g.max_lag else "-"
        table.add_row(g.group, str(g.partitions), Text(str(g.total), style=style), str(g.max_lag), worst)
    return table


def _outbox_and_clients(snapshot: Snapshot) -> Table:
    table = Table(
        title="Outbox and live relay",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        title_style="bold",
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    outbox = snapshot.outbox
    if isinstance(outbox, str):
        table.add_row("outbox", _unavailable(outbox))
    else:
        old = outbox.oldest_age_s or 0.0
        table.add_row(
            "unpublished events", Text(str(outbox.unpublished), style="yellow" if outbox.unpublished else "")
        )
        table.add_row("oldest unpublished", Text(_age(outbox.oldest_age_s), style="red" if old > 30 else ""))
    clients = snapshot.ws_clients
    shown = Text(clients, style="red") if isinstance(clients, str) else Text(f"{clients:g}")
    table.add_row("WebSocket clients", shown)
    return table


def _dead_letters_table(counts: dict[str, int] | str) -> RenderableType:
    if isinstance(counts, str):
        return Group(Text("Dead letters", style="italic"), _unavailable(counts))
    table = Table(
        title="Dead letters by reason", title_justify="left", box=box.SIMPLE_HEAD, title_style="bold"
    )
    table.add_column("reason")
    table.add_column("records", justify="right")
    for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(reason, str(n))
    if not counts:
        table.add_row(Text("none", style="dim"), "0")
    return table


def _next_attempt(f: ops_reads.FailingDelivery) -> Text:
    if f.disabled:
        return Text("disabled", style="red")
    if f.next_attempt_at is None:
        return Text("gave up", style="red")
    return Text(f"{f.next_attempt_at:%H:%M:%S}")


def _failing_table(failing: list[ops_reads.FailingDelivery] | str) -> RenderableType:
    if isinstance(failing, str):
        return Group(Text("Failing deliveries", style="italic"), _unavailable(failing))
    table = Table(
        title=f"Failing deliveries (the latest {FAILING_SHOWN}, alike ones counted together)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        title_style="bold",
    )
    table.add_column("subscription", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("channel", no_wrap=True, min_width=7)
    table.add_column("target", no_wrap=True, max_width=34, overflow="ellipsis")
    table.add_column("attempts", justify="right", no_wrap=True, min_width=8)
    table.add_column("last error", no_wrap=True, overflow="ellipsis", max_width=44)
    table.add_column("next attempt", no_wrap=True, min_width=12)
    # Consecutive deliveries of one subscription failing alike are one row: a dead endpoint fails them all.
    rows: list[tuple[ops_reads.FailingDelivery, int]] = []
    for f in failing:
        last = rows[-1][0] if rows else None
        if last is not None and (last.subscription, last.target, last.last_error) == (
            f.subscription,
            f.target,
            f.last_error,
        ):
            rows[-1] = (last, rows[-1][1] + 1)
        else:
            rows.append((f, 1))
    for f, n in rows:
        table.add_row(
            f.subscription + (f" (x{n})" if n > 1 else ""),
            f.channel,
            f.target,
            str(f.attempts),
            f.last_error or "",
            _next_attempt(f),
        )
    if not failing:
        table.add_row(Text("none", style="dim"), "", "", "", "", "")
    return table


def render(snapshot: Snapshot) -> RenderableType:
    down = sum(h.state != "ready" for h in snapshot.health)
    headline = Text.assemble(
        ("inventory-monitor status", "bold"),
        f"  {snapshot.at:%Y-%m-%d %H:%M:%S} UTC  ",
        (f"{down} process(es) not ready", "bold red") if down else ("all processes ready", "bold green"),
    )
    grid = Table.grid(expand=True, padding=(0, 2))
    grid.add_column(ratio=3)
    grid.add_column(ratio=2)
    grid.add_row(_health_table(snapshot.health), _outbox_and_clients(snapshot))
    grid.add_row(_lag_table(snapshot.lag), _dead_letters_table(snapshot.dead_letters))
    return Group(headline, grid, _failing_table(snapshot.failing))


# --- the command ------------------------------------------------------------------------------------------


def status_command(
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Redraw until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", "-n", min=0.5, help="Seconds between redraws.")
    ] = 2.0,
) -> None:
    """One screen: process health, consumer lag, outbox, dead letters, failing deliveries, live clients."""
    settings = get_settings()
    console = Console()
    if not watch:
        console.print(render(asyncio.run(gather(settings))))
        return
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --watch ends
        asyncio.run(_watch(settings, console, interval))


async def _watch(settings: Settings, console: Console, interval: float) -> None:
    with Live(console=console, auto_refresh=False) as live:
        while True:
            started = time.monotonic()
            live.update(render(await gather(settings)), refresh=True)
            await asyncio.sleep(max(interval - (time.monotonic() - started), 0.0))
