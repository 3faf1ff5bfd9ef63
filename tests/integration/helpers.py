"""Shared helpers of the real-stack integration tests: a safe command producer, polling waits on the
database, worker processes, and an independent oracle of the stock rules (plain ints and dicts)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from contracts.topics import STOCK_COMMANDS
from infra.settings import Settings
from tests.processes import Process, start, wait_ready

T = TypeVar("T")

POLL_INTERVAL_S = 0.1


def run_id() -> str:
    """A short random marker of one test run (SKUs, reservation ids and headers carry it)."""
    return uuid.uuid4().hex[:8].upper()


def pg_dsn(settings: Settings) -> str:
    return settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_dsn(settings))
    try:
        yield conn
    finally:
        await conn.close()


async def wait_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float,
    what: str,
    interval: float = POLL_INTERVAL_S,
) -> T:
    """Poll `probe` until `done(value)`; fail with the last value when the deadline passes."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; last value: {value!r}")
        await asyncio.sleep(interval)  # poll interval while waiting for a condition


async def processed_count(conn: asyncpg.Connection, command_ids: Sequence[uuid.UUID]) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM processed_commands WHERE command_id = ANY($1::uuid[])", list(command_ids)
    )
    return count


async def wait_processed(
    conn: asyncpg.Connection, command: dict[str, Any], *, what: str, within: float = 30
) -> None:
    """Wait until `command` has its processed_commands row (applied or rejected)."""
    await wait_until(
        lambda: processed_count(conn, [uuid.UUID(command["command_id"])]),
        lambda n: n == 1,
        within=within,
        what=what,
    )


async def processed_count_for_skus(conn: asyncpg.Connection, skus: Sequence[str]) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM processed_commands WHERE sku = ANY($1::text[])", list(skus)
    )
    return count


class RivalClaim:
    """Another session, standing in for a second consumer of the same records, claims `command`'s id in
    processed_commands inside an open transaction. A worker batch that holds the same command then waits
    on its own insert into processed_commands, inside its batch transaction, until the claim commits (the
    worker lost the race) or rolls back. This stops a batch at a known point before its commit."""

    def __init__(
        self, settings: Settings, command: dict[str, Any], status: str = "applied", reason: str | None = None
    ) -> None:
        self.settings, self.command, self.status, self.reason = settings, command, status, reason
        self.pid = 0
        self.open = False

    async def __aenter__(self) -> RivalClaim:
        self.conn = await asyncpg.connect(pg_dsn(self.settings))
        self.tx = self.conn.transaction()
        await self.tx.start()
        self.open = True
        await self.conn.execute(
            # The same record's claim: same id and issued_at, so the same partition and key.
            "INSERT INTO processed_commands (command_id, command_type, sku, status, reason, issued_at)"
            " VALUES ($1, $2, $3, $4, $5, $6::text::timestamptz)",
            uuid.UUID(self.command["command_id"]),
            self.command["type"],
            self.command["sku"],
            self.status,
            self.reason,
            self.command["issued_at"],
        )
        self.pid = self.conn.get_server_pid()
        return self

    async def end(self, *, commit: bool) -> None:
        if not self.open:
            return
        self.open = False
        try:
            await (self.tx.commit() if commit else self.tx.rollback())
        finally:
            await self.conn.close()

    async def __aexit__(self, *exc: object) -> None:
        await self.end(commit=False)


async def blocking(conn: asyncpg.Connection, pids: Iterable[int]) -> set[int]:
    """Which of `pids` (claim sessions) some other backend is waiting on right now."""
    rows = await conn.fetch(
        "SELECT DISTINCT b FROM pg_stat_activity, unnest(pg_blocking_pids(pid)) AS b"
        " WHERE b = ANY($1::int[])",
        list(pids),
    )
    return {r[0] for r in rows}


# --- producing ---------------------------------------------------------------------------------------


Headers = list[tuple[str, bytes]]


class CommandProducer:
    """Publishes raw records to the stock command topic, keyed by SKU, acks=all + idempotence (so the
    broker keeps per-partition order through retries)."""

    def __init__(self, settings: Settings, topic: str = STOCK_COMMANDS.name) -> None:
        self.topic = topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
        )

    async def __aenter__(self) -> CommandProducer:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(
        self, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> asyncio.Future[RecordMetadata]:
        """Enqueue one record (in call order per partition); the future resolves on the broker ack."""
        future: asyncio.Future[RecordMetadata] = await self.producer.send(
            self.topic, value=value, key=key, headers=headers or []
        )
        return future

    async def publish(
        self, records: Iterable[tuple[bytes | None, bytes | None, Headers | None]]
    ) -> list[RecordMetadata]:
        """Send records in order and wait for every ack."""
        futures = [await self.send(key, value, headers) for key, value, headers in records]
        return list(await asyncio.gather(*futures))

    async def command(self, command: dict[str, Any]) -> RecordMetadata:
        return await (await self.send(command["sku"].encode(), encode(command)))


# --- commands (plain dicts, built independently of contracts/) ----------------------------------------


def encode(command: dict[str, Any]) -> bytes:
    return json.dumps(command, separators=(",", ":")).encode()


def _envelope(type_: str, sku: str, command_id: uuid.UUID | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "command_id": str(command_id or uuid.uuid4()),
        "sku": sku,
        "issued_at": datetime.now(UTC).isoformat(),
        "actor": "integration-test",
        "source": "tests",
        **{k: v for k, v in fields.items() if v is not None},
    }


def register(sku: str, initial_quantity: int = 0, **fields: Any) -> dict[str, Any]:
    return _envelope("register_item", sku, name=f"Item {sku}", initial_quantity=initial_quantity, **fields)


def receive(sku: str, quantity: int, **fields: Any) -> dict[str, Any]:
    return _envelope("receive_stock", sku, quantity=quantity, **fields)


def adjust(sku: str, delta: int, reason_code: str = "correction", **fields: Any) -> dict[str, Any]:
    return _envelope("adjust_stock", sku, delta=delta, reason_code=reason_code, **fields)


def count(sku: str, counted_quantity: int, **fields: Any) -> dict[str, Any]:
    return _envelope("count_stock", sku, counted_quantity=counted_quantity, **fields)


def reserve(
    sku: str, reservation_id: str, quantity: int, expires_at: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    expiry = expires_at.isoformat() if expires_at is not None else None
    return _envelope(
        "reserve_stock", sku, reservation_id=reservation_id, quantity=quantity, expires_at=expiry, **fields
    )


def release(sku: str, reservation_id: str, **fields: Any) -> dict[str, Any]:
    return _envelope("release_reservation", sku, reservation_id=reservation_id, **fields)


def fulfil(sku: str, reservation_id: str, **fields: Any) -> dict[str, Any]:
    return _envelope("fulfil_reservation", sku, reservation_id=reservation_id, **fields)


def transfer(sku: str, from_location: str, to_location: str, quantity: int, **fields: Any) -> dict[str, Any]:
    return _envelope(
        "transfer_stock",
        sku,
        from_location=from_location,
        to_location=to_location,
        quantity=quantity,
        **fields,
    )


def deactivate(sku: str, **fields: Any) -> dict[str, Any]:
    return _envelope("deactivate_item", sku, **fields)


def reactivate(sku: str, **fields: Any) -> dict[str, Any]:
    return _envelope("reactivate_item", sku, **fields)


# --- worker processes ---------------------------------------------------------------------------------


def start_worker(port: int, log_dir: Path, env: dict[str, str] | None = None) -> Process:
    """One stock worker process (the Procfile command), ready (/health/ready 200) on return."""
    log_dir.mkdir(parents=True, exist_ok=True)
    process = start(
        "stock_worker",
        port,
        log_dir,
        {
            "INVMON_STOCK_WORKER_PORT": str(port),
            "PYTHONUNBUFFERED": "1",  # a SIGKILLed worker must not lose its log lines
            **(env or {}),
        },
    )
    try:
        wait_ready(process)
    except BaseException:
        process.stop()
        raise
    return process


@contextmanager
def workers(settings: Settings, log_dir: Path, count: int = 1) -> Iterator[list[Process]]:
    """`count` stock workers in the default consumer group, each in its own log folder and port."""
    processes: list[Process] = []
    try:
        for i in range(count):
            processes.append(start_worker(settings.stock_worker_port + 10 * i, log_dir / f"worker-{i}"))
        yield processes
    finally:
        for process in processes:
            process.stop()


def log_lines(paths: Iterable[Path], event: str) -> list[dict[str, Any]]:
    """JSON log lines whose `event` is `event`, from the given process logs."""
    found: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if f'"{event}"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event:
                found.append(entry)
    return found


def log_lines_containing(paths: Iterable[Path], text: str) -> list[dict[str, Any]]:
    """JSON log lines that mention `text` anywhere."""
    found: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if text in line:
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
    return found


# --- the oracle -----------------------------------------------------------------------------------------


@dataclass
class OracleItem:
    on_hand: int
    reserved: int = 0
    version: int = 1
    active: bool = True
    ledger_rows: int = 0


@dataclass
class OracleReservation:
    sku: str
    quantity: int
    status: str = "active"


@dataclass
class Oracle:
    """What the stock rules should do, written from the README and contracts, not from workers/rules:
    a sequential model (per-SKU order is kept, so per SKU it is exact). `apply` returns (status, code)."""

    items: dict[str, OracleItem] = field(default_factory=dict)
    reservations: dict[tuple[str, str], OracleReservation] = field(default_factory=dict)  # (sku, id)
    outcomes: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def apply(self, command: dict[str, Any]) -> tuple[str, str | None]:
        command_id = command["command_id"]
        if command_id in self.outcomes:  # a re-sent command changes nothing
            return self.outcomes[command_id]
        outcome = self._decide(command)
        self.outcomes[command_id] = outcome
        return outcome

    def _decide(self, c: dict[str, Any]) -> tuple[str, str | None]:
        sku, kind = c["sku"], c["type"]
        item = self.items.get(sku)
        if kind == "register_item":
            if item is not None:
                return "rejected", "already_exists"
            initial = c.get("initial_quantity", 0)
            self.items[sku] = OracleItem(on_hand=initial, ledger_rows=1 if initial else 0)
            return "applied", None
        if item is None:
            return "rejected", "unknown_sku"
        expected = c.get("expected_version")
        if expected is not None and expected != item.version:
            return "rejected", "version_mismatch"
        if kind in ("deactivate_item", "reactivate_item"):
            want = kind == "reactivate_item"
            if item.active == want:
                return "rejected", "invalid_state"
            item.active = want
            item.version += 1
            return "applied", None
        if kind in ("receive_stock", "adjust_stock", "count_stock", "reserve_stock") and not item.active:
            return "rejected", "inactive_item"
        if kind == "receive_stock":
            return self._move(item, c["quantity"], 0)
        if kind == "adjust_stock":
            if item.on_hand + c["delta"] < item.reserved:
                return "rejected", "insufficient_stock"
            return self._move(item, c["delta"], 0)
        if kind == "count_stock":
            if c["counted_quantity"] < item.reserved:
                return "rejected", "insufficient_stock"
            return self._move(item, c["counted_quantity"] - item.on_hand, 0)
        key = (sku, c["reservation_id"])  # a reservation id is unique per SKU
        reservation = self.reservations.get(key)
        if kind == "reserve_stock":
            if reservation is not None:
                return "rejected", "reservation_exists"
            if c["quantity"] > item.on_hand - item.reserved:
                return "rejected", "insufficient_stock"
            self.reservations[key] = OracleReservation(sku, c["quantity"])
            return self._move(item, 0, c["quantity"])
        if reservation is None:
            return "rejected", "unknown_reservation"
        if reservation.status != "active":
            return "rejected", "reservation_closed"
        if kind == "release_reservation":
            reservation.status = "released"
            return self._move(item, 0, -reservation.quantity)
        if kind == "fulfil_reservation":
            reservation.status = "fulfilled"
            return self._move(item, -reservation.quantity, -reservation.quantity)
        raise AssertionError(f"the oracle does not model {kind}")

    @staticmethod
    def _move(item: OracleItem, delta: int, reserved_delta: int) -> tuple[str, str | None]:
        item.on_hand += delta
        item.reserved += reserved_delta
        item.version += 1
        item.ledger_rows += 1
        assert 0 <= item.reserved <= item.on_hand, "the oracle itself broke an invariant"
        return "applied", None
