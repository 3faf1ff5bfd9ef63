"""`invmon run`: every Procfile process as a child of this one, stopped cleanly with it.

Each child gets a session (process group) of its own, so a signal reaches it and whatever it started,
and the terminal's Ctrl-C reaches only this supervisor, which passes it on. SIGTERM or SIGINT is sent on to
every group; after `grace` seconds whatever is left gets SIGKILL; then the supervisor exits. One process
ending on its own stops the others too (as honcho, which ran them before, did): half a pipeline is worse
than none.

`invmon run --cluster` runs every process twice (edge.1, edge.2, ...) against the replicated stack: each
copy gets <cluster dir>/cluster.env (written by `invmon stack up --cluster`) and its own port from the
cluster layout, under the same supervisor. Every process is safe in two copies: workers and the notifier
split partitions in their consumer groups (the notifier's deliveries are claimed with SKIP LOCKED), the
outbox relay's second copy is a standby waiting on the leader's advisory lock, schedules take an advisory
lock per round, and edges and relays are stateless behind nginx.

Children always log JSON. Each line goes, as written, to <stack dir>/logs/processes/<name>.log (size
bounded, one rotated file kept), which `invmon logs` reads; the terminal shows it through structlog's
console renderer, or the JSON itself when stdout is not a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

from infra.settings import Settings
from invmon.stack.paths import StackPaths

# One file per process stays under this size; the previous one is kept as <name>.log.1.
LOG_MAX_BYTES = 20 * 1024 * 1024
# Wide enough for the longest copy's name ("outbox_relay.1").
NAME_WIDTH = 14
# SIGHUP: the terminal closed. The children, in sessions of their own, would not hear of it and stay behind.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def parse_procfile(text: str) -> dict[str, str]:
    """`name: command` lines, in order; blank lines and # comments are skipped."""
    processes: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise ValueError(f"not a Procfile line: {line!r}")
        processes[name.strip()] = command.strip()
    return processes


@dataclass
class SizeBoundedLog:
    """Appends lines to a file; past `max_bytes` the file becomes <name>.1 and a new one starts."""

    path: Path
    max_bytes: int = LOG_MAX_BYTES
    _handle: IO[bytes] | None = field(default=None, init=False)

    def write(self, line: bytes) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("ab")
        if self._handle.tell() + len(line) > self.max_bytes and self._handle.tell() > 0:
            self._handle.close()
            self.path.replace(self.path.with_name(self.path.name + ".1"))
            self._handle = self.path.open("ab")
        self._handle.write(line)
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def console_renderer(colors: bool) -> Callable[[str, bytes], str]:
    """Renders one child's line for a person: its JSON through structlog's console renderer."""
    render = structlog.dev.ConsoleRenderer(colors=colors)

    def line(name: str, raw: bytes) -> str:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return f"{name:<{NAME_WIDTH}}| {raw.decode('utf-8', 'replace').rstrip()}"
        if not isinstance(event, dict):
            return f"{name:<{NAME_WIDTH}}| {raw.decode('utf-8', 'replace').rstrip()}"
        event.pop("process", None)
        return f"{name:<{NAME_WIDTH}}| {render(None, str(event.get('level', 'info')), event)}"

    return line


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log: SizeBoundedLog

    def signal(self, sig: int) -> None:
        # The group outlives its leader while a grandchild is in it: signal it even after the leader ended.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


class Supervisor:
    def __init__(
        self,
        procfile: Mapping[str, str],
        env: Mapping[str, str],
        log_dir: Path,
        show: Callable[[str, bytes], str] | None,
        grace: float,
        out: IO[str] = sys.stdout,
        envs: Mapping[str, Mapping[str, str]] | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        """`envs`: per process name, variables on top of `env` (a copy's port and cluster settings).
        `groups`: copies of one process by name; a copy that ends leaves the others running while another
        copy of its group runs (that is what the copies are for), the last one ends them all."""
        self._procfile, self._env, self._log_dir = procfile, env, log_dir
        self._envs, self._groups = envs or {}, groups or {}
        self._show, self._grace, self._out = show, grace, out
        self._children: list[Child] = []
        self._stop = asyncio.Event()
        self._signal: int | None = None
        self._out_ok = True

    def _say(self, text: str) -> None:
        with contextlib.suppress(OSError):
            self._out.write(f"{'run':<{NAME_WIDTH}}| {text}\n")
            self._out.flush()

    def _on_signal(self, sig: int) -> None:
        if self._signal is not None:  # a second Ctrl-C: stop waiting
            self._say(f"{signal.Signals(sig).name} again: killing every process")
            for child in self._children:
                child.signal(signal.SIGKILL)
            return
        self._signal = sig
        self._stop.set()

    async def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        while True:
            try:
                raw = await child.process.stdout.readline()
            except ValueError:  # a line past the reader's limit: pass it on in pieces
                raw = await child.process.stdout.read(64 * 1024)
            if not raw:
                return
            child.log.write(raw if raw.endswith(b"\n") else raw + b"\n")
            if self._out_ok:
                shown = self._show(child.name, raw) + "\n" if self._show else raw.decode("utf-8", "replace")
                try:
                    self._out.write(shown)
                    self._out.flush()
                except OSError:
                    # The terminal or pipe went away: keep draining into the files, or a child blocks on a
                    # full pipe.
                    self._out_ok = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        pumps = []
        for name, command in self._procfile.items():
            process = await asyncio.create_subprocess_shell(
                f"exec {command}",
                env={**self._env, **self._envs.get(name, {})},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                limit=1024 * 1024,  # one log line may carry a long traceback
            )
            child = Child(name, process, SizeBoundedLog(self._log_dir / f"{name}.log"))
            self._children.append(child)
            pumps.append(asyncio.create_task(self._pump(child)))
            self._say(f"{name} started (pid {process.pid})")
        exits = {asyncio.create_task(c.process.wait()): c for c in self._children}
        stop = asyncio.create_task(self._stop.wait())
        first = await self._first_unreplaced_exit(stop, exits)
        returncode = 0
        if first is None and self._signal is not None:
            # The processes stop gracefully on SIGTERM and SIGINT; a hang-up means SIGTERM to them.
            forward = signal.SIGTERM if self._signal == signal.SIGHUP else self._signal
            self._say(f"{signal.Signals(forward).name} received: stopping every process")
        else:
            assert first is not None
            stop.cancel()
            code = first.process.returncode or 1
            returncode = 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + n
            forward = signal.SIGTERM
            self._say(f"{first.name} exited (rc={first.process.returncode}): stopping the others")
        for child in self._children:
            child.signal(forward)
        if not await self._all_gone(self._grace):
            for child in self._children:
                if child.group_alive():
                    self._say(f"{child.name} still running after {self._grace:g}s: SIGKILL")
                    child.signal(signal.SIGKILL)
            await self._all_gone(5.0)
        await asyncio.gather(*exits)
        # A grandchild that left its group may still hold a pipe open: do not wait for it for ever.
        _, stuck = await asyncio.wait(pumps, timeout=5.0)
        for pump in stuck:
            pump.cancel()
        for child in self._children:
            child.log.close()
            self._say(f"{child.name} stopped (rc={child.process.returncode})")
        return returncode

    async def _first_unreplaced_exit(
        self, stop: asyncio.Task[bool], exits: dict[asyncio.Task[int], Child]
    ) -> Child | None:
        """The first child to end with no other copy of its group running; None when a signal came first."""
        waiting: set[asyncio.Task[Any]] = {stop, *exits}
        while True:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                return None
            for task in done:
                child = exits[task]
                group = self._groups.get(child.name)
                others = [
                    c.name
                    for c in self._children
                    if c is not child and group is not None and self._groups.get(c.name) == group
                    if c.process.returncode is None
                ]
                if not others:
                    return child
                rc = child.process.returncode
                self._say(f"{child.name} exited (rc={rc}): {', '.join(others)} carries on")

    async def _all_gone(self, within: float) -> bool:
        """Every leader reaped and every group empty (grandchildren included) within `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if all(c.process.returncode is not None and not c.group_alive() for c in self._children):
                return True
            await asyncio.sleep(0.05)  # poll interval: a process group has no exit notification
        return False


def log_dir(settings: Settings) -> Path:
    """Where `invmon run` keeps each process's JSON lines (and `invmon logs` reads them)."""
    return StackPaths.from_settings(settings).logs / "processes"


def child_env() -> dict[str, str]:
    """This process's environment for the children: they find this interpreter's scripts first, and always
    write JSON (the files need it; the terminal rendering is this process's job)."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "INVMON_LOG_JSON": "true",
    }


def supervise(
    settings: Settings,
    procfile: Mapping[str, str],
    env: Mapping[str, str],
    logs: Path,
    grace: float,
    envs: Mapping[str, Mapping[str, str]] | None = None,
    groups: Mapping[str, str] | None = None,
) -> int:
    as_json = settings.log_json if settings.log_json is not None else not sys.stdout.isatty()
    show = None if as_json else console_renderer(colors=True)
    return asyncio.run(Supervisor(procfile, env, logs, show, grace, envs=envs, groups=groups).run())


def run(settings: Settings, procfile: Path, grace: float) -> int:
    return supervise(settings, parse_procfile(procfile.read_text()), child_env(), log_dir(settings), grace)
