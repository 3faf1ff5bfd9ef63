"""The stock pipeline on the real stack: Kafka -> stock worker process(es) -> PostgreSQL.

Commands are published straight to the command topic (keyed by SKU, acks=all, idempotent producer); the
stock worker runs as its Procfile process in the default consumer group. Every wait polls the database
with a deadline. Expected states come from the independent oracle in helpers.py, never from workers/rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.settings import Settings
from tests.integration import helpers as h
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

RUN_HEADER = "x-test-run"
POISON_HEADER = "x-test-poison"


async def outcomes(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[str, tuple[str, str | None]]:
    rows = await conn.fetch(
        "SELECT command_id, status, reason FROM processed_commands WHERE command_id = ANY($1::uuid[])", ids
    )
    return {
        str(r["command_id"]): (r["status"], r["reason"].split(":", 1)[0] if r["reason"] else None)
        for r in rows
    }


async def item_states(conn: asyncpg.Connection, skus: list[str]) -> dict[str, tuple[int, int, int]]:
    rows = await conn.fetch(
        "SELECT sku, stock_quantity, reserved_quantity, version FROM items WHERE sku = ANY($1::text[])", skus
    )
    return {r["sku"]: (r["stock_quantity"], r["reserved_quantity"], r["version"]) for r in rows}


async def ledger_sums(conn: asyncpg.Connection, skus: list[str]) -> dict[str, tuple[int, int, int]]:
    rows = await conn.fetch(
        "SELECT sku, sum(delta)::bigint AS d, sum(reserved_delta)::bigint AS r, count(*) AS n"
        " FROM stock_ledger WHERE sku = ANY($1::text[]) GROUP BY sku",
        skus,
    )
    return {r["sku"]: (r["d"], r["r"], r["n"]) for r in rows}


def expected_states(oracle: h.Oracle, skus: list[str]) -> dict[str, tuple[int, int, int]]:
    return {s: (oracle.items[s].on_hand, oracle.items[s].reserved, oracle.items[s].version) for s in skus}


async def read_dlq(
    settings: Settings, run: str, want: int, within: float, *, require: bool = True
) -> list[ConsumerRecord[Any, Any]]:
    """Read the whole DLQ topic from the beginning (no group) until `want` distinct poison records of this
    run have arrived (require=False: whatever arrived by the deadline); the worker dead-letters a batch's
    bad records before it applies the batch."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(STOCK_COMMANDS_DLQ.name, p) for p in range(settings.kafka_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[ConsumerRecord[Any, Any]] = []
        seen: set[bytes] = set()
        deadline = time.monotonic() + within
        while len(seen) < want:
            if time.monotonic() >= deadline:
                if not require:
                    return found
                raise AssertionError(f"only {len(seen)} of {want} poison records reached the DLQ")
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers)
                    if headers.get(RUN_HEADER) == run.encode():
                        found.append(record)
                        seen.add(headers[POISON_HEADER])
        return found
    finally:
        await consumer.stop()


# --- 1. poison records ----------------------------------------------------------------------------------


def poison_record(
    i: int, run: str, skus: list[str], rng: random.Random
) -> tuple[str, bytes | None, bytes, str | None]:
    """(category, key, value, command_id that must never apply) of the i-th bad record."""
    sku = rng.choice(skus)
    category = ("not_json", "wrong_shape", "unknown_type", "bad_sku", "key_mismatch", "empty")[i % 6]
    if category == "not_json":
        return category, sku.encode(), b"\xff\xfe not json {" + str(i).encode(), None
    if category == "wrong_shape":
        shapes: list[Any] = [
            [1, 2, 3],
            "just a string",
            {"type": "receive_stock", "sku": sku},
            {**h.receive(sku, 1), "quantity": "lots"},
            {**h.receive(sku, 1), "surprise": True},
        ]
        return category, sku.encode(), json.dumps(shapes[i % len(shapes)]).encode(), None
    if category == "unknown_type":
        command = {**h.receive(sku, 1), "type": "teleport_stock"}
        return category, sku.encode(), h.encode(command), command["command_id"]
    if category == "bad_sku":
        command = h.receive("bad sku!", 1)
        return category, b"bad sku!", h.encode(command), command["command_id"]
    if category == "key_mismatch":
        command = h.receive(sku, 1_000)
        other = rng.choice([s for s in skus if s != sku] + [""])
        return category, other.encode() if other else None, h.encode(command), command["command_id"]
    return category, sku.encode(), b"", None


async def test_poison_records_go_to_dlq_and_valid_ones_apply(
    stack: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    run, rng = h.run_id(), random.Random()
    skus = [f"IT1-{run}-{i:03d}" for i in range(100)]
    valid = [h.register(s, rng.randint(0, 30)) for s in skus]
    for _ in range(9_900):
        sku = rng.choice(skus)
        if rng.random() < 0.6:
            valid.append(h.receive(sku, rng.randint(1, 20)))
        else:
            delta = rng.choice([d for d in range(-25, 16) if d])
            valid.append(h.adjust(sku, delta, rng.choice(["damage", "loss", "found", "correction"])))
    oracle = h.Oracle()
    for command in valid:
        oracle.apply(command)

    records: list[tuple[bytes | None, bytes | None, h.Headers | None]] = [
        (c["sku"].encode(), h.encode(c), [("content-type", b"application/json")]) for c in valid
    ]
    poison: dict[int, tuple[str, bytes | None, bytes, str | None]] = {}
    positions: dict[int, int] = {}
    for i in range(1_000):
        poison[i] = poison_record(i, run, skus, rng)
        _, key, value, _ = poison[i]
        marks: h.Headers = [(RUN_HEADER, run.encode()), (POISON_HEADER, str(i).encode())]
        records.insert(rng.randint(0, len(records)), (key, value, marks))
    for position, (_, _, record_headers) in enumerate(records):
        marks_by_name = dict(record_headers or [])
        if POISON_HEADER in marks_by_name:
            positions[int(marks_by_name[POISON_HEADER])] = position

    started = time.monotonic()
    with h.workers(stack, tmp_path, count=1):
        async with h.CommandProducer(stack) as producer:
            metadata = await producer.publish(records)
        published = time.monotonic()
        valid_ids = [uuid.UUID(c["command_id"]) for c in valid]
        await h.wait_until(
            lambda: h.processed_count(db, valid_ids),
            lambda n: n == len(valid_ids),
            within=45,
            what="all 10,000 valid commands in processed_commands",
        )
        applied = time.monotonic()
        dead = await read_dlq(stack, run, want=len(poison), within=20)
    print(
        f"\npublished 11,000 records in {published - started:.1f}s (incl. worker start);"
        f" all valid applied after {applied - started:.1f}s; DLQ read in {time.monotonic() - applied:.1f}s"
    )

    by_index: dict[int, list[ConsumerRecord[Any, Any]]] = {}
    for record in dead:
        by_index.setdefault(int(dict(record.headers)[POISON_HEADER]), []).append(record)
    assert sorted(by_index) == list(range(1_000))
    duplicates = len(dead) - len(by_index)
    print(f"DLQ: {len(by_index)} poison records, {duplicates} redelivered copies")
    for i, copies in by_index.items():
        category, key, value, _ = poison[i]
        origin = metadata[positions[i]]
        for record in copies:
            dlq = {k: v.decode() for k, v in record.headers}
            assert record.value == value, (category, i)
            assert record.key == key, (category, i)
            assert dlq["x-dlq-reason"], (category, i)
            assert dlq["x-origin-topic"] == STOCK_COMMANDS.name
            assert int(dlq["x-origin-partition"]) == origin.partition, (category, i)
            assert int(dlq["x-origin-offset"]) == origin.offset, (category, i)
            reason = dlq["x-dlq-reason"]
            if category == "empty":
                assert reason == "empty record value"
            elif category == "key_mismatch":
                assert "does not match sku" in reason, reason
            else:
                assert reason.startswith("invalid command:"), (category, reason)

    never = [uuid.UUID(cid) for _, _, _, cid in poison.values() if cid]
    assert await h.processed_count(db, never) == 0
    assert await outcomes(db, valid_ids) == oracle.outcomes
    assert await item_states(db, skus) == expected_states(oracle, skus)
    sums = await ledger_sums(db, skus)
    assert {s: (d, r) for s, (d, r, _) in sums.items()} == {
        s: (on_hand, reserved) for s, (on_hand, reserved, _) in expected_states(oracle, skus).items()
    }


# --- 2. concurrent reservations ---------------------------------------------------------------------------


async def test_concurrent_reservations_never_oversell(
    stack: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    run = h.run_id()
    sku = f"IT2-{run}"
    with h.workers(stack, tmp_path, count=2):
        async with h.CommandProducer(stack) as producer:
            registered = h.register(sku, 50)
            await producer.command(registered)
            await h.wait_processed(db, registered, what="the item registration")
            reserves = [h.reserve(sku, f"{run}-order-{i}", 1) for i in range(100)]
            await asyncio.gather(*(producer.command(c) for c in reserves))
        ids = [uuid.UUID(c["command_id"]) for c in reserves]
        await h.wait_until(
            lambda: h.processed_count(db, ids), lambda n: n == 100, within=30, what="100 reservations"
        )

    rows = await db.fetch(
        "SELECT status, reason FROM processed_commands WHERE command_id = ANY($1::uuid[])", ids
    )
    statuses = Counter(r["status"] for r in rows)
    assert statuses == {"applied": 50, "rejected": 50}
    assert all(r["reason"].startswith("insufficient_stock") for r in rows if r["status"] == "rejected")
    item = await db.fetchrow("SELECT stock_quantity, reserved_quantity FROM items WHERE sku = $1", sku)
    assert item is not None
    assert (item["stock_quantity"], item["reserved_quantity"]) == (50, 50)
    assert item["stock_quantity"] - item["reserved_quantity"] == 0
    assert await db.fetchval("SELECT sum(reserved_delta) FROM stock_ledger WHERE sku = $1", sku) == 50
    assert (
        await db.fetchval("SELECT count(*) FROM reservations WHERE sku = $1 AND status = 'active'", sku) == 50
    )


# --- 3. expiry ----------------------------------------------------------------------------------------------


async def test_reservation_expires_exactly_once(
    stack: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    run = h.run_id()
    sku, rid = f"IT3-{run}", f"{run}-expiring"
    with h.workers(stack, tmp_path, count=2):
        async with h.CommandProducer(stack) as producer:
            registered = h.register(sku, 10)
            await producer.command(registered)
            await h.wait_processed(db, registered, what="the item registration")
            reserved = h.reserve(sku, rid, 4, expires_at=datetime.now(UTC) + timedelta(seconds=2))
            await producer.command(reserved)

            async def status() -> str | None:
                value: str | None = await db.fetchval(
                    "SELECT status FROM reservations WHERE reservation_id = $1", rid
                )
                return value

            await h.wait_until(status, lambda s: s == "expired", within=30, what=f"{rid} to expire")
            # Both schedulers may publish the expiry again until they see it applied; a later command on the
            # same SKU (same partition) is processed only after every copy published before it.
            marker = h.receive(sku, 1)
            await producer.command(marker)
            await h.wait_processed(db, marker, what="the marker command")

    assert await outcomes(db, [uuid.UUID(reserved["command_id"])]) == {
        reserved["command_id"]: ("applied", None)
    }
    reasons = Counter(
        r["reason"] for r in await db.fetch("SELECT reason FROM stock_ledger WHERE sku = $1", sku)
    )
    assert reasons == {
        "initial_quantity": 1,
        "reserve_stock": 1,
        "expire_reservation": 1,
        "receive_stock": 1,
    }
    expiries = await db.fetch(
        "SELECT status FROM processed_commands WHERE sku = $1 AND command_type = 'expire_reservation'", sku
    )
    assert [r["status"] for r in expiries] == ["applied"]
    item = await db.fetchrow(
        "SELECT stock_quantity, reserved_quantity, version FROM items WHERE sku = $1", sku
    )
    assert item is not None
    assert tuple(item) == (11, 0, 4)


# --- regressions: product bugs these tests found (fixed in 2279af8) --------------------------------------


async def test_record_with_binary_header_does_not_lose_its_batch(
    stack: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """Regression (fixed in 2279af8): a record whose header value is not UTF-8 made FastStream's batch
    parser (AioKafkaBatchParser.parse_batch: j.decode()) raise before the handler ran; nothing nacked
    (AckPolicy.MANUAL) and the next batch's ack committed past the whole failed batch, so its valid
    commands were never applied and nothing reached the DLQ."""
    run = h.run_id()
    sku = f"IT5-{run}"
    with h.workers(stack, tmp_path, count=1):
        async with h.CommandProducer(stack) as producer:
            registered = h.register(sku, 0)
            await producer.command(registered)
            await h.wait_processed(db, registered, what="the item registration")
            neighbours = [h.receive(sku, 1) for _ in range(40)]
            odd = h.receive(sku, 1_000)
            records: list[tuple[bytes | None, bytes | None, h.Headers | None]] = [
                (sku.encode(), h.encode(c), None) for c in neighbours
            ]
            headers = [(RUN_HEADER, run.encode()), (POISON_HEADER, b"0"), ("trace-bin", b"\xff\x00")]
            records.insert(20, (sku.encode(), h.encode(odd), headers))
            await producer.publish(records)  # one partition, in order: almost surely one batch
            marker = h.receive(sku, 100_000)
            await producer.command(marker)
            # The marker comes after every other record of the partition: once it is processed, so are they.
            await h.wait_processed(db, marker, what="the marker command")
    applied = await h.processed_count(db, [uuid.UUID(c["command_id"]) for c in neighbours])
    odd_handled = await h.processed_count(db, [uuid.UUID(odd["command_id"])]) == 1
    if not odd_handled:  # a record the worker cannot read may go to the DLQ instead
        odd_handled = bool(await read_dlq(stack, run, want=1, within=5, require=False))
    assert (applied, odd_handled) == (40, True), "commands were lost without trace"


async def test_dlq_keeps_original_header_bytes(stack: Settings, tmp_path: Path) -> None:
    """Regression (fixed in 2279af8): dead_letter() rebuilt headers as a dict of UTF-8 strings, so binary
    header bytes became U+FFFD and repeated header keys collapsed to the last value."""
    run = h.run_id()
    sku = f"IT6-{run}"
    original: h.Headers = [
        (RUN_HEADER, run.encode()),
        (POISON_HEADER, b"0"),
        ("trace-bin", b"\x00\xff\x80\x01 binary"),
        ("hop", b"gateway-a"),
        ("hop", b"gateway-b"),
    ]
    with h.workers(stack, tmp_path, count=1):
        async with h.CommandProducer(stack) as producer:
            await producer.publish([(sku.encode(), b"not json", original)])
        (dead,) = await read_dlq(stack, run, want=1, within=5)
    assert dead.value == b"not json"
    kept = list(dead.headers)
    assert [pair for pair in kept if pair in original] == original, kept


async def worker_counter(settings: Settings, line: re.Pattern[str]) -> float:
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"http://127.0.0.1:{settings.stock_worker_port}/metrics")).text
    return sum(float(x.split()[-1]) for x in text.splitlines() if line.match(x))


DUPLICATES = re.compile(
    r'^invmon_commands_total\{(?=[^}]*worker="stock")(?=[^}]*outcome="duplicate")[^}]*\} '
)


async def test_lost_race_on_a_command_id_is_handled_in_place(
    stack: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """Regression (fixed in 2279af8): the batch retry caught only SQLAlchemy's DBAPIError/OSError, but the
    batch runs on the raw asyncpg connection whose errors (UniqueViolationError on a lost command-id race,
    deadlocks, dropped connections) arrive unwrapped: they escaped the handler, which nacked and got the
    batch again at once, with no back-off. Now the batch that loses the race is applied again in place,
    with the look-up of processed ids, and finds the command a duplicate."""
    sku = f"IT7-{h.run_id()}"
    registered = h.register(sku, 5)
    with h.workers(stack, tmp_path, count=1) as (worker,):
        duplicates_before = await worker_counter(stack, DUPLICATES)
        async with h.CommandProducer(stack) as producer:
            # Another consumer claims the command id first: the worker's batch waits on the claim, then
            # loses the race when the claim commits.
            async with h.RivalClaim(stack, registered) as rival:
                await producer.command(registered)
                await h.wait_until(
                    lambda: h.blocking(db, [rival.pid]),
                    bool,
                    within=20,
                    what="the worker's batch to wait on the rival claim",
                )
                await rival.end(commit=True)
            marker = h.receive(sku, 1)
            await producer.command(marker)
            await h.wait_processed(db, marker, what="the marker command", within=20)
        duplicates = await worker_counter(stack, DUPLICATES) - duplicates_before
    escaped = [
        entry
        for entry in h.log_lines_containing([worker.log], "UniqueViolationError")
        if entry.get("level") == "error"
    ]
    assert not escaped, f"the error escaped the handler: {escaped[0]['event'][:200]}"
    assert duplicates == 1


async def test_a_batch_is_one_transaction(stack: Settings, db: asyncpg.Connection, tmp_path: Path) -> None:
    """Regression (fixed in 2279af8): apply_batch opened `engine.begin()` and then ran every statement on
    the raw asyncpg connection; SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement
    that goes through SQLAlchemy, and none did, so each statement autocommitted. A batch that lost a race
    on one command id had its other commands' state changes committed already and applied them again on
    redelivery (on-hand 18 instead of 6 here); the item change was visible before the batch ended."""
    sku = f"IT8-{h.run_id()}"
    with h.workers(stack, tmp_path, count=1):
        async with h.CommandProducer(stack) as producer:
            registered = h.register(sku, 0)
            await producer.command(registered)
            await h.wait_processed(db, registered, what="the item registration")
            receipt, contested = h.receive(sku, 5), h.receive(sku, 7)
            async with h.RivalClaim(stack, contested) as rival:
                # Both records go out in one produce request: the worker gets them in one batch.
                await producer.publish([(sku.encode(), h.encode(c), None) for c in (receipt, contested)])
                await h.wait_until(
                    lambda: h.blocking(db, [rival.pid]),
                    bool,
                    within=20,
                    what="the worker's batch to wait on the rival claim",
                )
                # The batch has not committed: another session must not see any of it yet.
                mid_batch = await item_states(db, [sku])
                await rival.end(commit=True)  # the worker lost the race: its whole batch must roll back
            marker = h.receive(sku, 1)
            await producer.command(marker)
            await h.wait_processed(db, marker, what="the marker command")
    receipt_rows = await db.fetchval(
        "SELECT count(*) FROM stock_ledger WHERE command_id = $1", uuid.UUID(receipt["command_id"])
    )
    final = await item_states(db, [sku])
    assert (mid_batch, final, receipt_rows) == ({sku: (0, 0, 1)}, {sku: (6, 0, 3)}, 1)


# --- 4. exactly once under SIGKILL ------------------------------------------------------------------------


def generate_mix(
    run: str, rng: random.Random, n_skus: int = 200, total: int = 20_000
) -> tuple[list[str], list[dict[str, Any]], h.Oracle]:
    """`total` commands over `n_skus` SKUs, interleaved across SKUs with per-SKU order kept, and the oracle
    that processed them in that order. Choices are biased by the oracle's state so most commands apply,
    but every kind of rejection occurs. A reservation id is unique per SKU, so every SKU uses the same ids
    (r0, r1, ...): a mix-up between SKUs would show."""
    skus = [f"IT4-{run}-{i:03d}" for i in range(n_skus)]
    oracle = h.Oracle()
    sequences: dict[str, list[dict[str, Any]]] = {}
    per_sku = total // n_skus
    for sku in skus:
        own: list[str] = []
        closed = h.OracleReservation(sku, 0, "none")
        sequence = [h.register(sku, rng.randint(0, 40), min_stock_level=rng.randint(0, 10))]
        oracle.apply(sequence[0])
        for _ in range(per_sku - 1):
            item = oracle.items[sku]
            active = [r for r in own if oracle.reservations.get((sku, r), closed).status == "active"]
            roll = rng.random()
            extra: dict[str, Any] = {}
            if rng.random() < 0.05:
                extra["expected_version"] = item.version - rng.choice([0, 0, 1])
            if not item.active and rng.random() < 0.25:
                command = h.reactivate(sku, **extra)
            elif roll < 0.30:
                command = h.receive(sku, rng.randint(1, 20), **extra)
            elif roll < 0.45:
                delta = rng.choice([d for d in range(-25, 16) if d])
                command = h.adjust(sku, delta, rng.choice(["damage", "found", "correction"]), **extra)
            elif roll < 0.52:
                counted = rng.randint(max(0, item.reserved - 5), item.on_hand + 10)
                command = h.count(sku, counted, **extra)
            elif roll < 0.74 or not active:
                if own and rng.random() < 0.05:
                    rid = rng.choice(own)
                else:
                    rid = f"{run}-r{len(own)}"
                    own.append(rid)
                available = item.on_hand - item.reserved
                command = h.reserve(sku, rid, rng.randint(1, max(1, available + 5)), **extra)
            elif roll < 0.99:
                closing = h.release if roll < 0.87 else h.fulfil
                if rng.random() < 0.9:
                    rid = rng.choice(active)
                elif rng.random() < 0.7:
                    rid = rng.choice(own)
                else:
                    rid = f"{run}-never"
                command = closing(sku, rid, **extra)
            else:  # mostly the right toggle, sometimes the wrong one (invalid_state)
                right = rng.random() < 0.85
                toggle = h.deactivate if item.active == right else h.reactivate
                command = toggle(sku, **extra)
            oracle.apply(command)
            sequence.append(command)
        sequences[sku] = sequence
    lanes = [sku for sku in skus for _ in range(per_sku)]
    rng.shuffle(lanes)
    cursors = dict.fromkeys(skus, 0)
    merged: list[dict[str, Any]] = []
    for sku in lanes:
        merged.append(sequences[sku][cursors[sku]])
        cursors[sku] += 1
    return skus, merged, oracle


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_exactly_once_under_sigkill(stack: Settings, db: asyncpg.Connection, tmp_path: Path) -> None:
    """20,000 commands over 200 SKUs plus 10% re-sent, six SIGKILLs of the worker (three of them inside a
    batch transaction), and the final state, every outcome, the ledger and the reservations must equal
    the independent oracle. Before 2279af8 batches ran in autocommit and this failed (hundreds of
    commands applied twice)."""
    run, rng = h.run_id(), random.Random()
    skus, commands, oracle = generate_mix(run, rng)
    distinct = len(commands)
    payloads = [(c["sku"].encode(), h.encode(c)) for c in commands]
    # 10% re-sent with the same id and bytes, each at a random later position (same key, same partition).
    ordered = [(float(i), key, value) for i, (key, value) in enumerate(payloads)]
    for i in rng.sample(range(distinct), distinct // 10):
        key, value = payloads[i]
        ordered.append((rng.uniform(i + 0.5, distinct), key, value))
    ordered.sort(key=lambda entry: entry[0])
    records: list[tuple[bytes | None, bytes | None, h.Headers | None]] = [
        (key, value, None) for _, key, value in ordered
    ]
    expected_kinds = Counter(status for status, _ in oracle.outcomes.values())
    resent = len(records) - distinct
    print(f"\n{distinct} commands + {resent} re-sent over {len(skus)} SKUs; oracle: {expected_kinds}")

    # Three kills come at arbitrary moments, when the processed count crosses 20%, 45% and 70%. Three more
    # land inside a batch transaction, deterministically: a rival session claims the id of a command the
    # oracle rejects (so the claim's row is the right outcome and the command changes nothing), the batch
    # holding it waits on its processed_commands insert, the worker is SIGKILLed there, then the rival
    # commits (it won the race; the killed batch must leave no trace).
    contested: list[dict[str, Any]] = []
    for fraction in (0.30, 0.55, 0.80):
        i = int(fraction * distinct)
        while oracle.outcomes[commands[i]["command_id"]][0] != "rejected":
            i += 1
        contested.append(commands[i])

    log_dir = tmp_path / "worker"
    port = stack.stock_worker_port
    started = time.monotonic()
    worker: Process = await asyncio.to_thread(h.start_worker, port, log_dir)
    kills: list[tuple[str, int]] = []
    try:
        async with contextlib.AsyncExitStack() as claims, h.CommandProducer(stack) as producer:
            rivals: dict[int, h.RivalClaim] = {}
            for command in contested:
                code = oracle.outcomes[command["command_id"]][1]
                rival = await claims.enter_async_context(
                    h.RivalClaim(stack, command, "rejected", f"{code}: claimed by a rival consumer")
                )
                rivals[rival.pid] = rival
            publishing = asyncio.create_task(producer.publish(records))
            thresholds = [0.20, 0.45, 0.70]
            deadline = time.monotonic() + 300
            while True:
                processed = await h.processed_count_for_skus(db, skus)
                if processed >= distinct:
                    break
                waited_on = await h.blocking(db, [pid for pid, r in rivals.items() if r.open])
                crossed = bool(thresholds) and processed >= thresholds[0] * distinct
                if waited_on or crossed:
                    if not waited_on:
                        thresholds.pop(0)
                    worker.stop(signal.SIGKILL)
                    kills.append(("in-transaction" if waited_on else "anywhere", processed))
                    for pid in waited_on:
                        await rivals[pid].end(commit=True)
                    worker = await asyncio.to_thread(h.start_worker, port, log_dir)
                if publishing.done() and publishing.exception() is not None:
                    raise AssertionError("publishing failed") from publishing.exception()
                assert time.monotonic() < deadline, f"only {processed} of {distinct} processed"
                await asyncio.sleep(0.05)  # poll interval while waiting for a condition
            published = await publishing
    finally:
        worker.stop()
    elapsed = time.monotonic() - started

    assert len(published) == len(records)
    assert Counter(kind for kind, _ in kills) == {"in-transaction": 3, "anywhere": 3}, kills
    assert all(at < distinct for _, at in kills)

    counts = await db.fetchrow(
        "SELECT count(*), count(DISTINCT command_id) FROM processed_commands WHERE sku = ANY($1::text[])",
        skus,
    )
    assert counts is not None
    total, unique = counts
    assert total == unique == distinct

    ids = [uuid.UUID(c["command_id"]) for c in commands]
    actual = await outcomes(db, ids)
    mismatched = {c: (actual.get(c), w) for c, w in oracle.outcomes.items() if actual.get(c) != w}
    assert not mismatched, f"{len(mismatched)} differ (actual, oracle): {list(mismatched.items())[:5]}"

    states = await item_states(db, skus)
    want = expected_states(oracle, skus)
    differ = {s: (states.get(s), want[s]) for s in skus if states.get(s) != want[s]}
    assert not differ, f"{len(differ)} SKUs differ (actual, oracle), e.g. {list(differ.items())[:5]}"

    sums = await ledger_sums(db, skus)
    for sku in skus:
        on_hand, reserved, _ = states[sku]
        assert sums[sku] == (on_hand, reserved, oracle.items[sku].ledger_rows), sku

    reservation_rows = await db.fetch(
        "SELECT sku, reservation_id, status FROM reservations WHERE sku = ANY($1::text[])", skus
    )
    assert {(r["sku"], r["reservation_id"]): r["status"] for r in reservation_rows} == {
        key: r.status for key, r in oracle.reservations.items()
    }

    logs = sorted(log_dir.glob("*.log"))
    run_skus = set(skus)
    dropped = [e for e in h.log_lines(logs, "duplicate_command") if e.get("sku") in run_skus]
    print(
        f"done in {elapsed:.1f}s: {len(kills)} SIGKILL+restart at (kind, processed)={kills};"
        f" duplicates dropped (logged, incl. redeliveries after kills): {len(dropped)}"
        f" of which distinct ids {len({e['command_id'] for e in dropped})};"
        f" re-sent in the stream: {len(records) - distinct}"
    )
