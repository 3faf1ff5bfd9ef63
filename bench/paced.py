"""An open-loop HTTP/1.1 sender for the end-to-end benchmarks (bench.live_e2e, bench.soak).

Requests go out on a fixed schedule (request i is due at start + i / rate), spread over keep-alive
connections (connection c sends requests c, c + n, c + 2n, ... in order, so requests of one connection keep
their order); a minimal client, because httpx would spend more CPU than the edge. Each answer is handed to
`on_answer` as it is read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Answer:
    index: int  # the request's number in the schedule
    sent_ns: int  # wall clock when the request was written
    read_ns: int  # wall clock when its answer was read
    status: int
    body: bytes


@dataclass(slots=True)
class Schedule:
    rate: float  # requests a second
    count: int  # at most this many requests
    deadline: float | None = None  # and none due after this time.monotonic()
    behind_s: float = 0.0  # how far the sender fell behind its schedule at worst
    sent: int = 0


async def send_paced(
    port: int,
    token: str,
    schedule: Schedule,
    connections: int,
    request: Callable[[int], tuple[str, bytes]],
    on_answer: Callable[[Answer], None],
) -> None:
    """POST request(i) = (path, JSON body) for i in 0..count-1 on schedule; stops early at the deadline."""
    start = time.monotonic() + 0.5

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(index, schedule.count, connections):
                due = start + i / schedule.rate
                if schedule.deadline is not None and due > schedule.deadline:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # pacing the sender on its schedule
                schedule.behind_s = max(schedule.behind_s, -wait)
                path, body = request(i)
                sent = time.time_ns()
                writer.write(
                    (
                        f"POST {path} HTTP/1.1\r\n"
                        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    ).encode()
                    + body
                )
                schedule.sent += 1
                head = await reader.readuntil(b"\r\n\r\n")
                at = head.lower().find(b"content-length:")
                length = int(head[at + 15 : head.index(b"\r\n", at)]) if at >= 0 else 0
                answer = await reader.readexactly(length)
                on_answer(Answer(i, sent, time.time_ns(), int(head[9:12]), answer))
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
