"""`invmon`: the operator's command line. Each command wires what it needs itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from contracts.topics import ALL_TOPICS, PRICE_COMMANDS_DLQ, STOCK_COMMANDS_DLQ
from infra.settings import get_settings
from invmon import dlq
from invmon.cli_auth import apikey_app, user_app
from invmon.cli_stack import stack_app
from invmon.dlq import DeadLetter
from invmon.export import export_app
from invmon.logs import logs
from invmon.metrics_docs import docs_app
from invmon.simulate import simulate_command
from invmon.status import status_command

app = typer.Typer(name="invmon", help="inventory-monitor: real-time inventory and price monitoring.")
app.add_typer(stack_app, name="stack")
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.command("simulate")(simulate_command)
app.add_typer(export_app, name="export")
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-letter topics: list and replay.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(db_app, name="db")
app.add_typer(topics_app, name="topics")
app.add_typer(docs_app, name="docs")
app.command("status")(status_command)
app.command("logs")(logs)
console = Console(highlight=False)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply Alembic migrations up to REVISION (default: head)."""
    from db.migrate import upgrade
    from db.partitions import maintain_now

    upgrade(get_settings().database_url, revision)
    report = asyncio.run(maintain_now(get_settings()))
    console.print(
        f"database at {revision}" + (f", {len(report.created)} partitions created" if report.created else "")
    )


@db_app.command("retention")
def db_retention() -> None:
    """Per partitioned table: size, partitions, oldest row, rows in DEFAULT and the next drop."""
    from invmon import retention

    console.print(retention.render(asyncio.run(retention.collect(get_settings()))))


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. base.")]) -> None:
    """Revert Alembic migrations down to REVISION."""
    from db.migrate import downgrade

    downgrade(get_settings().database_url, revision)
    console.print(f"database at {revision}")


@db_app.command("backup")
def db_backup(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Backup file to write (pg_dump custom format).")
    ],
) -> None:
    """Back up the database with pg_dump (custom format, -Fc); restore it with `invmon db restore`."""
    from invmon.backup import BackupError, backup

    try:
        backup(get_settings().database_url, output)
    except BackupError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(f"backup written to {output} ({output.stat().st_size} bytes)")


@db_app.command("restore")
def db_restore(
    source: Annotated[Path, typer.Argument(help="A file written by `invmon db backup`.")],
    target_url: Annotated[
        str | None,
        typer.Option("--target-url", help="Database to restore into (default: INVMON_DATABASE_URL)."),
    ] = None,
    clean: Annotated[
        bool, typer.Option("--clean", help="Allow a non-empty target: drop what the backup holds first.")
    ] = False,
) -> None:
    """Restore a backup into an empty database (pg_restore, one transaction); then let the workers replay."""
    from invmon.backup import BackupError, restore

    try:
        restore(source, target_url or get_settings().database_url, clean=clean)
    except BackupError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(f"restored {source}")


@topics_app.command("create")
def topics_create() -> None:
    """Create every project topic that is missing, with INVMON_KAFKA_PARTITIONS partitions, replication
    factor INVMON_KAFKA_REPLICATION_FACTOR and min.insync.replicas INVMON_KAFKA_MIN_INSYNC_REPLICAS."""
    from invmon.stack import kafka_admin

    settings = get_settings()
    asyncio.run(
        kafka_admin.create(
            settings.kafka_bootstrap,
            list(ALL_TOPICS),
            settings.kafka_partitions,
            settings.kafka_replication_factor,
            command_retention_s=settings.command_topic_retention_s,
            min_insync_replicas=settings.kafka_min_insync_replicas,
        )
    )
    console.print(f"topics ready: {', '.join(t.name for t in ALL_TOPICS)}")


_DLQ_TOPICS = {"stock": STOCK_COMMANDS_DLQ.name, "price": PRICE_COMMANDS_DLQ.name}
TopicOption = Annotated[str, typer.Option("--topic", help="Which DLQ: stock or price.")]


def _dlq_topic(name: str) -> str:
    if name not in _DLQ_TOPICS:
        raise typer.BadParameter(f"choose one of {', '.join(_DLQ_TOPICS)}")
    return _DLQ_TOPICS[name]


async def _letters(topic: str) -> list[DeadLetter]:
    return [letter async for letter in dlq.read(get_settings().kafka_bootstrap, topic)]


@dlq_app.command("list")
def dlq_list(
    topic: TopicOption = "stock",
    last: Annotated[int, typer.Option("-n", "--last", min=1, help="Show the last N records.")] = 50,
) -> None:
    """Dead-lettered records with their reason and origin (topic:partition:offset)."""
    letters = asyncio.run(_letters(_dlq_topic(topic)))
    table = Table("at", "origin", "reason", "value", box=None, pad_edge=False)
    for letter in sorted(letters, key=lambda x: (x.partition, x.offset))[-last:]:
        preview = letter.value[:60].decode("utf-8", "replace")
        table.add_row(f"{letter.partition}:{letter.offset}", letter.origin, letter.reason, preview)
    console.print(table)
    console.print(f"{len(letters)} record(s) in {_dlq_topic(topic)}")


@dlq_app.command("replay")
def dlq_replay(
    at: Annotated[
        list[str] | None, typer.Option("--at", help="PARTITION:OFFSET of a record to replay (repeatable).")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every record in the DLQ.")] = False,
    topic: TopicOption = "stock",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be replayed.")] = False,
) -> None:
    """Send dead-lettered records back to their origin topic (after the cause was fixed)."""
    if bool(at) == replay_all:
        raise typer.BadParameter("give either --at PARTITION:OFFSET (one or more) or --all")
    dlq_topic = _dlq_topic(topic)
    wanted = {tuple(int(n) for n in spec.split(":", 1)) for spec in at or ()}
    letters = [x for x in asyncio.run(_letters(dlq_topic)) if replay_all or (x.partition, x.offset) in wanted]
    missing = wanted - {(x.partition, x.offset) for x in letters}
    if missing:
        console.print(f"[red]not in {dlq_topic}: {sorted(missing)}[/red]")
        raise typer.Exit(1)
    if dry_run:
        for letter in letters:
            console.print(f"would replay {letter.partition}:{letter.offset} -> {letter.origin}")
        return
    count = asyncio.run(dlq.replay(get_settings(), letters, dlq_topic=dlq_topic))
    console.print(f"replayed {count} record(s) from {dlq_topic}")


@app.command()
def seed() -> None:
    """Publish a little demo data (a few items and stock receipts). Safe to repeat: ids are fixed."""
    from invmon.seed import publish_demo_data

    count = asyncio.run(publish_demo_data(get_settings()))
    console.print(f"published {count} demo commands")


@app.command()
def run(
    procfile: Annotated[Path, typer.Option(help="Procfile naming the processes.")] = Path("Procfile"),
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds the processes get to stop after SIGTERM/SIGINT.")
    ] = 20.0,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Two copies of every process (edge.1, edge.2, ...) against `invmon stack up --cluster`, "
            "with <cluster dir>/cluster.env and the cluster layout's ports.",
        ),
    ] = False,
) -> None:
    """Start every process of the Procfile (edge, workers, relay) against the configured stack.
    SIGTERM or SIGINT stops them all; their logs also go to <stack dir>/logs/processes/."""
    from invmon import runner

    if not procfile.is_file():
        console.print(f"[red]no Procfile at {procfile}[/red]")
        raise typer.Exit(2)
    settings = get_settings()
    if not cluster:
        raise typer.Exit(runner.run(settings, procfile, grace))
    from invmon.cluster_run import ClusterRunError, run_cluster
    from invmon.stack.cluster_layout import ClusterLayout

    layout = ClusterLayout(settings.cluster_base_port)
    try:
        raise typer.Exit(run_cluster(settings, procfile, grace, settings.cluster_stack_dir, layout))
    except ClusterRunError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error


if __name__ == "__main__":
    app()
