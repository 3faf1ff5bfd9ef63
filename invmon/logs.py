"""`invmon logs`: the JSON lines `invmon run` kept for every process, merged in time order; with
`--command-id`, one command's way through the pipeline.

A command's id is on the edge's, the workers' and the outbox relay's lines; the notifier and anything else
that logs per event name its event id. So a line belongs to the command when it carries the command id, or
an event id an earlier line of the command recorded (the worker's `event_recorded`)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from infra.settings import get_settings
from invmon.runner import console_renderer, log_dir

Line = dict[str, Any]
# (the Procfile name of the process that wrote it, the line)
Sourced = tuple[str, Line]


def parse(raw: bytes) -> Line | None:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # a traceback or a library's print before logging was configured
    return line if isinstance(line, dict) else None


@dataclass
class CommandFilter:
    """Keeps a command's lines, learning its event ids from them as they pass (in time order)."""

    command_id: str | None
    processes: frozenset[str] = frozenset()
    event_ids: set[str] = field(default_factory=set)

    def __call__(self, sourced: Sourced) -> bool:
        source, line = sourced
        if self.processes and source not in self.processes:
            return False
        if self.command_id is None:
            return True
        if line.get("command_id") == self.command_id:
            if isinstance(line.get("event_id"), str):
                self.event_ids.add(line["event_id"])
            return True
        return line.get("event_id") in self.event_ids


@dataclass
class Tail:
    """One process's file, read from `offset` on; survives `invmon run` rotating it."""

    path: Path
    offset: int = 0
    inode: int | None = None
    rest: bytes = b""

    @property
    def source(self) -> str:
        return self.path.name.removesuffix(".1").removesuffix(".log")

    def read(self) -> list[bytes]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            self.inode, self.offset, self.rest = stat.st_ino, 0, b""
        if stat.st_size == self.offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = self.rest + handle.read()
            self.offset = handle.tell()
        *lines, self.rest = data.split(b"\n")
        return [line for line in lines if line.strip()]


def _timestamp(sourced: Sourced) -> str:
    return str(sourced[1].get("timestamp", ""))


def read_all(directory: Path) -> tuple[list[Sourced], list[Tail]]:
    """Every kept line (rotated files too), sorted by time, and a tail per current file for --follow."""
    lines: list[Sourced] = []
    tails: list[Tail] = []
    for rotated in sorted(directory.glob("*.log.1")):
        source = Tail(rotated).source
        lines += [(source, x) for raw in rotated.read_bytes().splitlines() if (x := parse(raw)) is not None]
    for current in sorted(directory.glob("*.log")):
        tail = Tail(current)
        lines += [(tail.source, x) for raw in tail.read() if (x := parse(raw)) is not None]
        tails.append(tail)
    return sorted(lines, key=_timestamp), tails


def follow(directory: Path, tails: list[Tail], interval: float = 0.5) -> Iterator[Sourced]:
    """New lines as the processes write them; a process's file that appears later is picked up too."""
    known = {t.path for t in tails}
    while True:
        for path in sorted(directory.glob("*.log")):
            if path not in known:
                tails.append(Tail(path))
                known.add(path)
        fresh = [(t.source, x) for t in tails for raw in t.read() if (x := parse(raw)) is not None]
        yield from sorted(fresh, key=_timestamp)
        time.sleep(interval)  # files have no change notification worth a dependency


def render(lines: Iterable[Sourced], as_json: bool) -> None:
    show = console_renderer(colors=sys.stdout.isatty())
    for source, line in lines:
        if as_json:
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
        else:
            sys.stdout.write(show(source, orjson.dumps(line)) + "\n")
        sys.stdout.flush()


def logs(
    command_id: Annotated[
        str | None, typer.Option("--command-id", help="Only the lines of this command (and its events).")
    ] = None,
    process: Annotated[
        list[str] | None, typer.Option("--process", help="Only this Procfile process (repeatable).")
    ] = None,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    as_json: Annotated[
        bool | None, typer.Option("--json/--console", help="JSON lines (default when not a terminal).")
    ] = None,
) -> None:
    """The processes' log lines that `invmon run` kept (<stack dir>/logs/processes), merged in time order."""
    directory = log_dir(get_settings())
    if not directory.is_dir():
        raise typer.BadParameter(f"no process logs in {directory}: `invmon run` writes them")
    keep = CommandFilter(command_id, frozenset(process or ()))
    lines, tails = read_all(directory)
    json_out = as_json if as_json is not None else not os.isatty(sys.stdout.fileno())
    render(filter(keep, lines), json_out)
    if follow_:
        try:
            render(filter(keep, follow(directory, tails)), json_out)
        except KeyboardInterrupt:
            return
