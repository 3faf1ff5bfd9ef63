"""Process plumbing shared by the services: spawning detached, recognising our own pids, stopping, polling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency

from invmon.stack.state import ProcRecord


class StackError(RuntimeError):
    """A stack operation failed; the message says what to look at."""


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    first = text.splitlines()[0] if text else ""
    return int(first) if first.isdigit() else None


def write_pidfile(path: Path, pid: int) -> None:
    path.write_text(f"{pid}\n")


def record_of(pid: int) -> ProcRecord | None:
    try:
        return ProcRecord(pid=pid, create_time=psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def find_ours(
    pid: int | None, markers: Sequence[str], record: ProcRecord | None = None
) -> psutil.Process | None:
    """The live process `pid` if it is still the one we started, else None.

    A pid file can outlive its process and the pid be reused by anything, so the pid alone proves nothing:
    the command line must carry each marker as a whole argument (a program name, or a path inside this
    stack dir, so ".../data" never matches ".../data2") and, when we recorded it, the create time must match.
    """
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline: list[str] = proc.cmdline()
        if record is not None and record.pid == pid and abs(proc.create_time() - record.create_time) > 0.5:
            return None
    except psutil.Error:
        return None
    # Servers that rewrite their title (redis-server, postgres children) show one space-joined argument.
    args = [*cmdline, *" ".join(cmdline).split()]
    found = all(any(arg == m or arg.endswith("/" + m) for arg in args) for m in markers)
    return proc if found else None


async def terminate(proc: psutil.Process, timeout_s: float) -> bool:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL. True if it stopped on SIGTERM alone."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(signal.SIGTERM)
    if await _wait_gone(proc, timeout_s):
        return True
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill()
    if not await _wait_gone(proc, 10):
        raise StackError(f"pid {proc.pid} survived SIGKILL")
    return False


async def _wait_gone(proc: psutil.Process, timeout_s: float) -> bool:
    # Our servers are never our children (see spawn_detached), so init reaps them, and some inits reap
    # lazily (seconds): a zombie has already released its ports and files, so it counts as gone.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)


async def wait_reaped(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` is no longer a zombie; True if the pid now belongs to some other live process."""

    async def reaped() -> bool:
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return True

    await wait_until(reaped, what=f"pid {pid} to be reaped", timeout_s=timeout_s, interval_s=0.05)
    return bool(psutil.pid_exists(pid))


UNKNOWN_OWNER = "an unknown process"
RELEASE_WAIT_S = 10.0


def port_listener(port: int) -> str | None:
    """Who listens on 127.0.0.1:`port` (or on all interfaces), as 'pid N (cmd)'; None if the port is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        if sock.connect_ex(("127.0.0.1", port)) != 0:
            return None
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                cmd = " ".join(" ".join(psutil.Process(conn.pid).cmdline()).split())
                return f"pid {conn.pid} ({cmd[:120]})"
    return UNKNOWN_OWNER


def ensure_port_free(service: str, port: int) -> None:
    owner = port_listener(port)
    # A listener no process owns is a socket being torn down (a server killed a moment ago, e.g. by a
    # `down` just before this `up`): it goes away by itself, so it gets a few seconds before it counts.
    deadline = time.monotonic() + RELEASE_WAIT_S
    while owner == UNKNOWN_OWNER and time.monotonic() < deadline:
        time.sleep(0.2)
        owner = port_listener(port)
    if owner is not None:
        raise StackError(
            f"{service}: port {port} is already in use by {owner}; pick another port in settings"
        )


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    what: str,
    timeout_s: float,
    interval_s: float = 0.1,
    abort: Callable[[], str | None] | None = None,
) -> float:
    """Poll `check` until it is true; return the seconds waited. `abort` returns a reason to give up early."""
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        if await check():
            return time.monotonic() - start
        if abort is not None and (reason := abort()) is not None:
            raise StackError(f"{what}: {reason}")
        if time.monotonic() >= deadline:
            raise StackError(f"{what}: not ready after {timeout_s:.0f}s")
        await asyncio.sleep(interval_s)


async def run(
    cmd: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, what: str
) -> str:
    """Run a short command to completion; its output is returned, or shown in the error if it fails."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Ctrl-C goes to our process group; a half-run initdb or mvn is worse than a slow exit.
        start_new_session=True,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-25:])
        raise StackError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return text


async def spawn_detached(
    cmd: Sequence[str], *, log: Path, cwd: Path, env: dict[str, str] | None = None
) -> int:
    """Start a long-running server that outlives us; return its pid.

    A tiny shell starts the server in the background and exits at once, so the server is re-parented to
    init: it never becomes our zombie, survives the invoking `invmon` (and its terminal: new session),
    and its stdout/stderr go straight to the log file.
    """
    script = 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!'
    out = await run(["sh", "-c", script, "sh", str(log), *cmd], cwd=cwd, env=env, what=f"starting {cmd[0]}")
    return int(out.strip().splitlines()[-1])


def tail_text(path: Path, lines: int) -> str:
    """The last `lines` lines of a log file, reading only its end (logs grow without bound)."""
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        block = min(size, max(4096, lines * 400))
        while True:
            fh.seek(size - block)
            data = fh.read(block)
            if data.count(b"\n") > lines or block == size:
                break
            block = min(size, block * 4)
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
