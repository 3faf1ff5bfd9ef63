"""The small HTTP surface every worker process serves: /health/live, /health/ready, /metrics."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ReadyCheck = Callable[[], Awaitable[object]]


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@contextmanager
def metrics_server(enabled: bool, host: str, port: int | None) -> Iterator[bool]:
    """Serve /metrics on a port of its own while inside, if `port` is set and metrics are `enabled`.
    Yields whether the process's main port should still serve /metrics itself.

    prometheus_client's own server, on a thread: a scrape then never waits behind the event loop, and the
    port can sit on an interface that only the scraper reaches."""
    if not enabled or port is None:
        yield enabled
        return
    server, thread = start_http_server(port, addr=host)
    try:
        yield False
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def service_routes(checks: Mapping[str, ReadyCheck], *, timeout_s: float = 2.0) -> list[Route]:
    """Routes for a worker. `checks` each raise or return falsy when their dependency is not usable."""

    async def live(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        results = await run_checks(checks, timeout_s=timeout_s)
        ok = all(v == "ok" for v in results.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": results}, 200 if ok else 503)

    return [
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/metrics", lambda _: metrics_response()),
    ]


async def run_checks(checks: Mapping[str, ReadyCheck], *, timeout_s: float) -> dict[str, str]:
    async def one(check: ReadyCheck) -> str:
        try:
            result = await asyncio.wait_for(check(), timeout_s)
        except TimeoutError:
            return "timeout"
        except Exception as error:  # a readiness probe reports any failure, it never raises
            return f"error: {type(error).__name__}"
        return "ok" if result or result is None else "failed"

    names = list(checks)
    outcomes = await asyncio.gather(*(one(checks[n]) for n in names))
    return dict(zip(names, outcomes, strict=True))


def readiness(results: Mapping[str, str], optional: frozenset[str] = frozenset()) -> tuple[str, int]:
    """The status and HTTP code of a readiness answer. A failed `optional` check (one the process works
    around, e.g. the read replica: reads fall back to the primary) makes it `degraded` but still ready, so
    a load balancer keeps the process while an operator sees what is missing."""
    failed = {name for name, outcome in results.items() if outcome != "ok"}
    if not failed:
        return "ok", 200
    if failed <= optional:
        return "degraded", 200
    return "unavailable", 503


def freeze_startup_objects() -> None:
    """Call once a process has started: move everything allocated so far (the app, models, routes,
    schemas, ~180k objects in the edge) out of the cycle collector's reach. A full collection over them
    takes ~50 ms on this box, a stall every in-flight request waits for; after the freeze it takes
    microseconds. Those objects live as long as the process anyway.

    The youngest generation is collected every 10,000 net allocations instead of 700: a batch of
    commands allocates tens of thousands of objects that die together, and the default ran a collection
    every few dozen commands (edge batch intake: 12.0 -> 10.5 us of CPU per command)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
