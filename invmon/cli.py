"""`invmon`: the operator's command line. Each command wires what it needs itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from contracts.topics import ALL_TOPICS
from infra.settings import get_settings
from invmon.cli_stack import stack_app

app = typer.Typer(name="invmon", help="inventory-monitor: real-time inventory and price monitoring.")
app.add_typer(stack_app, name="stack")
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(topics_app, name="topics")
console = Console(highlight=False)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply Alembic migrations up to REVISION (default: head)."""
    from db.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    console.print(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. base.")]) -> None:
    """Revert Alembic migrations down to REVISION."""
    from db.migrate import downgrade

    downgrade(get_settings().database_url, revision)
    console.print(f"database at {revision}")


@topics_app.command("create")
def topics_create() -> None:
    """Create every project topic that is missing, with INVMON_KAFKA_PARTITIONS partitions."""
    from invmon.stack import kafka_admin

    settings = get_settings()
    asyncio.run(
        kafka_admin.create(
            settings.kafka_bootstrap, list(ALL_TOPICS), settings.kafka_partitions, settings.kafka_replication
        )
    )
    console.print(f"topics ready: {', '.join(t.name for t in ALL_TOPICS)}")


@app.command()
def seed() -> None:
    """Publish a little demo data (a few items and stock receipts). Safe to repeat: ids are fixed."""
    from invmon.seed import publish_demo_data

    count = asyncio.run(publish_demo_data(get_settings()))
    console.print(f"published {count} demo commands")


@app.command()
def run(
    procfile: Annotated[Path, typer.Option(help="Procfile naming the processes.")] = Path("Procfile"),
) -> None:
    """Start every process of the Procfile (edge, workers, relay) against the configured stack."""
    if not procfile.is_file():
        console.print(f"[red]no Procfile at {procfile}[/red]")
        raise typer.Exit(2)
    # honcho runs each Procfile line with this interpreter's environment.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    raise typer.Exit(subprocess.call([sys.executable, "-m", "honcho", "-f", str(procfile), "start"], env=env))


if __name__ == "__main__":
    app()
