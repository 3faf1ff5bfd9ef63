"""Several edge processes behind one port: requests/s and batch commands/s of `uvicorn --workers N`.

    python -m bench.edge_workers [--workers 2] [--duration 15] [--concurrency 64] [--skus 1000]

The issue's figure is for ONE edge process (`bench.edge_http`); this is the second figure, for a
deployment that runs several. Run `bench.edge_http` first on the same stack (it prepares the topics,
the SKUs and the `bench-edge` user; this script does not). Each worker is the Procfile's edge app with
the same settings (rate limits raised but still checked in Redis, publishing to the real broker). CPU is
the sum over the uvicorn supervisor and its workers.

Caveat for production: with `--workers`, each worker has its own Prometheus registry, so /metrics shows
one worker's counters; run separate processes (honcho scale, one port each) or a multiprocess registry.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench import edge_http, stacks
from infra.logging import configure_logging
from infra.settings import get_settings
from tests import processes

ROOT = Path(__file__).resolve().parent.parent


def app() -> Any:
    """The edge app for `uvicorn --factory`: logging configured in each worker, as api_edge.main does."""
    from api_edge.app import create_edge

    settings = get_settings()
    configure_logging("edge", settings.log_level, json=settings.log_json)
    return create_edge(settings)


_process_cpu_s = edge_http.cpu_s


def tree_cpu_s(root: psutil.Process) -> float:
    return sum(_process_cpu_s(p) for p in [root, *root.children(recursive=True)])


def start(workers: int, log_dir: Path) -> processes.Process:
    port = edge_http.free_port()
    popen = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "bench.edge_workers:app", "--factory",
            "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--no-server-header", "--ws", "none",
            "--http", "api_edge.http_protocol:JoinedWritesProtocol",
        ],
        cwd=ROOT,
        env={**os.environ, **edge_http.edge_env(port)},
        stdout=(log_dir / "edge.log").open("ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    process = processes.Process("edge", port, popen, log_dir / "edge.log")
    processes.wait_ready(process)
    return process


async def run(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="bench-edge-workers-"))
    process = start(args.workers, log_dir)
    port, popen = process.port, process.popen
    root = psutil.Process(popen.pid)
    base = f"http://127.0.0.1:{port}"
    # The phases read the edge's CPU through edge_http.cpu_s(edge): count the whole process tree.
    edge_http.cpu_s = lambda p: tree_cpu_s(p) if p.pid == root.pid else _process_cpu_s(p)
    try:
        token = await edge_http.login(base)
        await edge_http.warm_up(base, token, args.skus)
        for concurrency in (args.concurrency, 4):
            phase = await edge_http.wrk_phase(
                base, token, args.skus, concurrency, args.duration, root, None, log_dir
            )
            print(f"{args.workers} workers", *edge_http.single_lines(phase), sep="\n")
        for size in (1000, 5000):
            batch = await edge_http.batch_phase(
                base, token, args.skus, size, 2 * args.workers, args.duration, root, None
            )
            print(f"{args.workers} workers", *edge_http.batch_lines(batch), sep="\n")
        rss = [edge_http.mb(p.memory_info().rss) for p in [root, *root.children(recursive=True)]]
        print(f"RSS: supervisor and workers {', '.join(rss)}")
    finally:
        edge_http.cpu_s = _process_cpu_s
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--skus", type=int, default=1000)
    settings = get_settings()
    if stacks.default_stack(settings.stack_dir):
        sys.exit(f"refusing the default stack {settings.stack_dir}: set INVMON_STACK_DIR")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
