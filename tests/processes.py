"""Start the real pipeline processes (the Procfile's commands) for end-to-end tests, and stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {
        name.strip(): cmd.strip() for name, _, cmd in (line.partition(":") for line in lines if line.strip())
    }


def start(name: str, port: int, log_dir: Path, env: dict[str, str] | None = None) -> Process:
    command = procfile()[name].split()
    if command[0] == "python":
        command[0] = sys.executable
    log = log_dir / f"{name}.log"
    handle = log.open("ab")
    popen = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=handle, stderr=subprocess.STDOUT
    )
    return Process(name, port, popen, log)


def wait_ready(process: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{process.port}/health/ready"
    last = "no answer"
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited: {process.log.read_text()[-3000:]}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.1)  # poll interval while waiting for a condition
    raise TimeoutError(f"{process.name} not ready after {timeout}s: {last}")


@contextmanager
def running(
    names: dict[str, int], log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[dict[str, Process]]:
    processes = {name: start(name, port, log_dir, env) for name, port in names.items()}
    try:
        for process in processes.values():
            wait_ready(process)
        yield processes
    finally:
        # A test may have replaced a process (a restart): stop whatever the dict holds now.
        for process in processes.values():
            process.stop()
