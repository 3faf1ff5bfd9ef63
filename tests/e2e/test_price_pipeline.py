"""The price pipeline on the real stack: edge and Kafka -> price worker process -> PostgreSQL -> reads.

The worker processes come from the e2e `pipeline` fixture (Procfile commands); one test stops and restarts
the price worker around a scheduled activation. Commands go in over HTTP or straight to the price command
topic (aiokafka, acks=all, idempotent, key = SKU). Every wait polls with a deadline. Expected histories come
from an oracle in this file that uses exact fractions, not from workers/rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, NamedTuple

import asyncpg
import httpx
import pytest

from contracts.topics import PRICE_COMMANDS
from db.engine import make_engine
from db.price_reads import lowest_prior_price
from infra.settings import Settings
from tests.e2e.support import new_sku, wait_for_status
from tests.integration import helpers as h
from tests.processes import Process, start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

CENT = Decimal("0.01")


@pytest.fixture
async def producer(stack: Settings) -> AsyncIterator[h.CommandProducer]:
    async with h.CommandProducer(stack, PRICE_COMMANDS.name) as p:
        yield p


# --- commands and reads ---------------------------------------------------------------------------------


def price_command(type_: str, sku: str, actor: str, **fields: Any) -> dict[str, Any]:
    """A price command as a plain dict, written from the contract's JSON shape."""
    return {
        "type": type_,
        "command_id": str(uuid.uuid4()),
        "sku": sku,
        "issued_at": datetime.now(UTC).isoformat(),
        "actor": actor,
        "source": "price-pipeline-test",
        **{k: v for k, v in fields.items() if v is not None},
    }


def set_price(
    sku: str, selling: Decimal, cost: Decimal | None = None, *, actor: str = "alice", **fields: Any
) -> dict[str, Any]:
    return price_command(
        "set_price",
        sku,
        actor,
        currency="EUR",
        selling_price=str(selling),
        cost_price=str(cost) if cost is not None else None,
        **fields,
    )


async def accepted(edge: httpx.AsyncClient, response: httpx.Response) -> dict[str, Any]:
    """Wait for an HTTP command's outcome and return it (applied or rejected)."""
    assert response.status_code == 202, response.text
    return await wait_for_status(edge, response.json()["command_id"])


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> dict[str, Any]:
    status = await accepted(edge, response)
    assert status["status"] == "applied", status
    return status


async def registered(edge: httpx.AsyncClient) -> str:
    sku = new_sku()
    await applied(edge, await edge.post("/v1/items", json={"sku": sku, "name": "Priced item"}))
    return sku


async def eur(edge: httpx.AsyncClient, sku: str) -> dict[str, Any]:
    response = await edge.get(f"/v1/items/{sku}/prices")
    assert response.status_code == 200, response.text
    return next(p for p in response.json()["prices"] if p["currency"] == "EUR")


async def outcomes(conn: asyncpg.Connection, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    rows = await conn.fetch(
        "SELECT command_id, status, reason FROM processed_commands WHERE command_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in ids],
    )
    return {str(r["command_id"]): (r["status"], r["reason"]) for r in rows}


async def processed(
    conn: asyncpg.Connection, commands: list[dict[str, Any]], within: float
) -> dict[str, tuple[str, str | None]]:
    """Wait until every command has an outcome in processed_commands."""
    ids = [c["command_id"] for c in commands]
    return await h.wait_until(
        lambda: outcomes(conn, ids),
        lambda found: len(found) == len(ids),
        within=within,
        what=f"{len(ids)} price commands processed",
    )


async def full_history(edge: httpx.AsyncClient, sku: str, page: int = 400) -> list[dict[str, Any]]:
    """Every history entry through the keyset-paged HTTP read."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        response = await edge.get(
            f"/v1/items/{sku}/prices/EUR/history", params={"after": after, "limit": page}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        entries.extend(body["entries"])
        if body["next_after"] is None:
            return entries
        after = body["next_after"]


def money(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


# --- a. scheduled activation across worker restarts -----------------------------------------------------


def restart_price_worker(
    pipeline: dict[str, Process], stack: Settings, sig: int
) -> tuple[int, float, datetime]:
    """Stop the price worker with `sig`, start a new one and wait until it is ready; the fixture's map is
    updated so teardown stops the new one. Returns the old exit code, the seconds no worker was up, and
    when the new one was ready."""
    old = pipeline["price_worker"]
    stopped_at = time.monotonic()
    code = old.stop(sig)
    new = start("price_worker", stack.price_worker_port, old.log.parent, {"PYTHONUNBUFFERED": "1"})
    pipeline["price_worker"] = new
    wait_ready(new)
    return code, time.monotonic() - stopped_at, datetime.now(UTC)


def ensure_price_worker(pipeline: dict[str, Process], stack: Settings) -> None:
    """Leave a running price worker behind for the other tests, whatever happened."""
    if pipeline["price_worker"].popen.poll() is not None:
        old = pipeline["price_worker"]
        pipeline["price_worker"] = start("price_worker", stack.price_worker_port, old.log.parent)
        wait_ready(pipeline["price_worker"])


async def sleep_until(moment: datetime) -> None:
    """Act at a wall-clock instant of the scenario (a timed action, not a wait for a condition)."""
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


async def test_scheduled_price_activates_on_time_exactly_once_across_worker_restarts(
    edge: httpx.AsyncClient, db: asyncpg.Connection, pipeline: dict[str, Process], stack: Settings
) -> None:
    sku = await registered(edge)
    await applied(
        edge,
        await edge.post(
            f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "10", "cost_price": "5"}
        ),
    )
    start_at = datetime.now(UTC) + timedelta(seconds=4)
    window = {
        "currency": "EUR",
        "selling_price": "9",
        "effective_from": start_at.isoformat(),
        "effective_until": (start_at + timedelta(minutes=5)).isoformat(),
    }
    change_id = (await applied(edge, await edge.post(f"/v1/items/{sku}/prices", json=window)))["command_id"]
    assert datetime.now(UTC) < start_at - timedelta(seconds=1.5), (
        "setting up took too long to restart before the start"
    )

    async def first_seen_at(price: str) -> datetime:
        while (await eur(edge, sku))["effective_price"] != price:  # noqa: ASYNC110  # polls over HTTP
            await asyncio.sleep(0.05)  # poll interval while waiting for a condition
        return datetime.now(UTC)

    watcher = asyncio.create_task(first_seen_at("9.0000"))
    try:
        await sleep_until(start_at - timedelta(seconds=1))
        assert not watcher.done(), "the window was in force before its start"
        term_code, term_down, back_at = await asyncio.to_thread(
            restart_price_worker, pipeline, stack, signal.SIGTERM
        )
        seen_at = await asyncio.wait_for(watcher, 15)
        # Right after the activation: kill the worker without warning and start it again.
        _, kill_down, _ = await asyncio.to_thread(restart_price_worker, pipeline, stack, signal.SIGKILL)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await asyncio.to_thread(ensure_price_worker, pipeline, stack)
    # uvicorn re-raises the signal after its graceful shutdown; -9 would mean it had to be killed.
    assert term_code in (0, -signal.SIGTERM), f"the price worker did not stop cleanly on SIGTERM: {term_code}"

    # A command behind the activation on the SKU's partition: once the restarted worker has decided it, any
    # redelivered activation has been seen too.
    probe = await accepted(
        edge,
        await edge.post(
            f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "10", "expected_version": 0}
        ),
    )
    assert probe["status"] == "rejected"
    assert probe["reason"].startswith("version_mismatch")

    price = await eur(edge, sku)
    assert (price["effective_price"], price["effective_change_id"]) == ("9.0000", change_id)
    rows = await db.fetch(
        "SELECT h.change_type, h.old_price, h.new_price, h.created_at, h.effective_from AS recorded_from,"
        " h.requested_by, w.requested_by AS window_requested_by, w.effective_from, w.status"
        " FROM price_history h JOIN price_windows w USING (change_id) WHERE h.change_id = $1",
        uuid.UUID(change_id),
    )
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["change_type"], row["old_price"], row["new_price"], row["status"]) == (
        "scheduled",
        Decimal(10),
        Decimal(9),
        "active",
    )
    assert (row["recorded_from"], row["requested_by"]) == (row["effective_from"], row["window_requested_by"])
    activations = await db.fetch(
        "SELECT command_id, status FROM processed_commands"
        " WHERE sku = $1 AND command_type = 'activate_scheduled_price'",
        sku,
    )
    assert [r["status"] for r in activations] == ["applied"]
    outbox = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE sku = $1 AND event_type = 'scheduled_price_activated'", sku
    )
    assert outbox == 1

    applied_at, effective_from = row["created_at"], row["effective_from"]
    db_lateness = (applied_at - effective_from).total_seconds()
    http_lateness = (seen_at - start_at).total_seconds()
    overran = back_at > start_at
    print(
        f"\nactivation: applied {db_lateness:.3f}s after the start (DB), seen over HTTP after"
        f" {http_lateness:.3f}s; SIGTERM restart took {term_down:.2f}s"
        f" ({'back after the start' if overran else 'back before the start'}),"
        f" SIGKILL restart {kill_down:.2f}s"
    )
    assert db_lateness >= 0, "activated before its start"
    # Within a second of the start, or, when the replacement process itself took so long to start that it
    # was not back by then (a loaded machine), within a second of its being back: no worker, no activation.
    due = max(start_at, back_at)
    assert (applied_at - due).total_seconds() < 1.0, (db_lateness, overran)
    assert (seen_at - due).total_seconds() < 1.0, (http_lateness, overran)


# --- b. overlapping windows -----------------------------------------------------------------------------


INSERT_WINDOW = (
    "INSERT INTO price_windows (change_id, sku, currency, selling_price, effective_from, effective_until,"
    " status, requested_by) VALUES ($1, $2, $3, 8.5, $4, $5, $6, 'sql-test')"
)


async def test_overlapping_window_is_refused_by_the_worker_and_by_the_database(
    edge: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    sku = await registered(edge)
    await applied(
        edge,
        await edge.post(
            f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "10", "cost_price": "5"}
        ),
    )
    begin = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    end = begin + timedelta(hours=1)
    first = {
        "currency": "EUR",
        "selling_price": "9",
        "effective_from": begin.isoformat(),
        "effective_until": end.isoformat(),
    }
    change_id = (await applied(edge, await edge.post(f"/v1/items/{sku}/prices", json=first)))["command_id"]

    overlapping = {
        **first,
        "selling_price": "8.5",
        "effective_from": (begin + timedelta(minutes=30)).isoformat(),
        "effective_until": (end + timedelta(hours=1)).isoformat(),
    }
    refused = await accepted(edge, await edge.post(f"/v1/items/{sku}/prices", json=overlapping))
    assert refused["status"] == "rejected"
    reason: str = refused["reason"]
    assert reason.startswith("window_overlap: window overlaps"), reason
    assert change_id in reason
    assert begin.isoformat() in reason
    assert end.isoformat() in reason
    windows = (await eur(edge, sku))["windows"]
    assert [w["change_id"] for w in windows] == [change_id]

    # The database refuses the same overlap on its own, whatever the code does.
    tx = db.transaction()
    await tx.start()
    try:
        for status in ("scheduled", "active"):
            with pytest.raises(asyncpg.exceptions.ExclusionViolationError) as refusal:
                async with db.transaction():
                    await db.execute(
                        INSERT_WINDOW,
                        uuid.uuid4(),
                        sku,
                        "EUR",
                        begin + timedelta(minutes=59),
                        end + timedelta(hours=1),
                        status,
                    )
            assert refusal.value.constraint_name == "ex_price_windows_no_overlap"
            assert "ex_price_windows_no_overlap" in str(refusal.value)
        with pytest.raises(asyncpg.exceptions.ExclusionViolationError):
            async with db.transaction():  # open-ended from before it
                await db.execute(
                    INSERT_WINDOW, uuid.uuid4(), sku, "EUR", begin - timedelta(days=1), None, "scheduled"
                )
        # What does not overlap an open window is accepted: touching it, closed rows, another currency.
        await db.execute(INSERT_WINDOW, uuid.uuid4(), sku, "EUR", end, end + timedelta(hours=1), "scheduled")
        await db.execute(INSERT_WINDOW, uuid.uuid4(), sku, "EUR", begin, end, "expired")
        await db.execute(INSERT_WINDOW, uuid.uuid4(), sku, "EUR", begin, end, "cancelled")
        await db.execute(INSERT_WINDOW, uuid.uuid4(), sku, "USD", begin, end, "scheduled")
    finally:
        await tx.rollback()

    cancelled = await applied(
        edge, await edge.post(f"/v1/items/{sku}/price-windows/{change_id}/cancel", json={})
    )
    assert cancelled["command_type"] == "cancel_scheduled_price"
    assert (await eur(edge, sku))["windows"] == []


# --- c. approval ----------------------------------------------------------------------------------------


async def test_large_change_stays_pending_until_approved_and_history_shows_request_and_approval(
    edge: httpx.AsyncClient, db: asyncpg.Connection, producer: h.CommandProducer
) -> None:
    sku = await registered(edge)
    base = set_price(sku, Decimal("10.00"), Decimal("5.00"), actor="alice")
    await producer.command(base)
    request = set_price(sku, Decimal("15.00"), actor="alice", reason="supplier increase")
    await producer.command(request)
    assert await processed(db, [base, request], within=15) == {
        base["command_id"]: ("applied", None),
        request["command_id"]: ("applied", None),
    }
    before = await eur(edge, sku)
    assert (before["effective_price"], before["version"]) == ("10.0000", 1)
    pending = (await edge.get("/v1/price-changes", params={"status": "pending", "limit": 500})).json()
    mine = [p for p in pending if p["change_id"] == request["command_id"]]
    assert len(mine) == 1, f"change not in the pending queue of {len(pending)}"
    assert (
        mine[0]["sku"],
        mine[0]["requested_by"],
        mine[0]["status"],
        Decimal(mine[0]["selling_price"]),
    ) == (sku, "alice", "pending", Decimal(15))
    assert "moves 50.00%" in mine[0]["why"]
    assert [(e["change_type"], e["new_price"]) for e in await full_history(edge, sku)] == [
        ("manual", "10.0000")
    ]

    approve = price_command(
        "approve_price_change", sku, "bob", change_id=request["command_id"], comment="checked with supplier"
    )
    await producer.command(approve)
    assert await processed(db, [approve], within=15) == {approve["command_id"]: ("applied", None)}

    after = await eur(edge, sku)
    assert (after["effective_price"], after["version"]) == ("15.0000", 2)
    history = await full_history(edge, sku)
    assert len(history) == 2
    approval = history[-1]
    assert (approval["change_type"], approval["change_id"], approval["command_id"]) == (
        "approval",
        request["command_id"],
        approve["command_id"],
    )
    assert (approval["requested_by"], approval["approved_by"], approval["reason"]) == (
        "alice",
        "bob",
        "supplier increase",
    )
    assert (money(approval["old_price"]), money(approval["new_price"]), money(approval["change_pct"])) == (
        Decimal(10),
        Decimal(15),
        Decimal(50),
    )
    change = await db.fetchrow(
        "SELECT * FROM price_changes WHERE change_id = $1", uuid.UUID(request["command_id"])
    )
    assert change is not None
    assert (change["status"], change["requested_by"], change["decided_by"], change["comment"]) == (
        "approved",
        "alice",
        "bob",
        "checked with supplier",
    )
    assert change["requested_at"] <= datetime.fromisoformat(approval["created_at"])
    events = [
        r["event_type"]
        for r in await db.fetch("SELECT event_type FROM outbox WHERE sku = $1 ORDER BY id", sku)
    ]
    assert events[-4:] == [
        "price_changed",
        "price_change_pending_approval",
        "price_change_approved",
        "price_changed",
    ]
    pending = (await edge.get("/v1/price-changes", params={"status": "pending", "limit": 500})).json()
    assert request["command_id"] not in {p["change_id"] for p in pending}


async def test_a_decision_under_another_sku_is_refused(
    edge: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    sku, other = await registered(edge), await registered(edge)
    await applied(
        edge,
        await edge.post(
            f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "10", "cost_price": "5"}
        ),
    )
    change_id = (
        await applied(
            edge, await edge.post(f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "20"})
        )
    )["command_id"]
    try:
        outcome = await accepted(
            edge, await edge.post(f"/v1/items/{other}/price-changes/{change_id}/approve", json={})
        )
        # Was (before f6105e8): applied to the first SKU, with the history row and events under the other.
        assert outcome["status"] == "rejected", outcome
        assert outcome["reason"].startswith("unknown_change")
        assert (await eur(edge, sku))["effective_price"] == "10.0000"
        assert await full_history(edge, other) == []
        assert (
            await db.fetchval(
                "SELECT count(*) FROM outbox WHERE sku = $1 AND event_type LIKE 'price%'", other
            )
            == 0
        )
    finally:  # do not leave the change in the pending queue
        await accepted(edge, await edge.post(f"/v1/items/{sku}/price-changes/{change_id}/reject", json={}))


# --- d. 1,000 random changes against an oracle ----------------------------------------------------------


def cents(value: Decimal) -> Decimal:
    """EUR has 2 minor units; half-up."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


class Entry(NamedTuple):
    old: Decimal | None
    new: Decimal
    change_type: str
    change_id: str
    approved_by: str | None


@dataclass
class PriceOracle:
    """One SKU in EUR, immediate changes only. A change is held when it moves the price in force by more
    than the threshold or puts the margin under the floor (exact arithmetic); approval applies the terms
    as they were requested; rejection changes nothing."""

    threshold: Fraction
    floor: Fraction
    effective: Decimal | None = None
    cost: Decimal | None = None
    version: int = 0
    history: list[Entry] = field(default_factory=list)
    pending: dict[str, tuple[Decimal, Decimal | None]] = field(default_factory=dict)
    decided: dict[str, str] = field(default_factory=dict)

    def holds(self, effective: Decimal, cost: Decimal | None) -> bool:
        """Exact percentages, against the price in force (there are no windows here)."""
        if self.effective:
            move = abs(Fraction(effective) - Fraction(self.effective)) / Fraction(self.effective) * 100
            if move > self.threshold:
                return True
        if cost is not None and effective:
            margin = (Fraction(effective) - Fraction(cost)) / Fraction(effective) * 100
            if margin < self.floor:
                return True
        return False

    def set_price(self, change_id: str, effective: Decimal, cost: Decimal | None) -> None:
        terms_cost = cost if cost is not None else self.cost
        if self.holds(effective, terms_cost):
            self.pending[change_id] = (effective, terms_cost)
        else:
            self._apply(change_id, effective, terms_cost, "manual", None)

    def approve(self, change_id: str, actor: str) -> None:
        effective, cost = self.pending.pop(change_id)
        self.decided[change_id] = "approved"
        self._apply(change_id, effective, cost, "approval", actor)

    def reject(self, change_id: str) -> None:
        del self.pending[change_id]
        self.decided[change_id] = "rejected"

    def _apply(
        self, change_id: str, effective: Decimal, cost: Decimal | None, kind: str, approver: str | None
    ) -> None:
        self.history.append(Entry(self.effective, effective, kind, change_id, approver))
        self.effective, self.cost = effective, cost
        self.version += 1


def random_amount(rng: random.Random, value: float) -> Decimal:
    """A positive amount with 2 to 4 decimals (the worker rounds it to cents)."""
    return max(Decimal("0.01"), Decimal(f"{value:.{rng.choice((2, 2, 3, 4))}f}"))


def random_set_price(
    rng: random.Random, oracle: PriceOracle, sku: str
) -> tuple[dict[str, Any], Decimal, Decimal | None]:
    """A random SetPrice, with its effective price and cost rounded to cents (None: keep the current cost)."""
    current = float(oracle.effective) if oracle.effective else rng.uniform(20, 200)
    roll = rng.random()
    if roll < 0.05 and oracle.effective:  # right at the threshold: exactly +-20% is not "more than 20%"
        limit = oracle.threshold / 100
        selling = Decimal(f"{current * float(1 + rng.choice((limit, -limit))):.2f}")
    elif roll < 0.2:  # a large move (held)
        selling = random_amount(rng, current * rng.choice((rng.uniform(0.4, 0.78), rng.uniform(1.22, 1.9))))
    else:  # small moves, drifting back into 20..200
        low, high = (1.0 if current < 20 else 0.87), (1.0 if current > 200 else 1.15)
        selling = random_amount(rng, current * rng.uniform(low, high))
    discount = random_amount(rng, float(selling) * rng.uniform(0.9, 1.0)) if rng.random() < 0.15 else None
    if discount is not None and discount > selling:
        discount = selling
    effective = cents(discount if discount is not None else selling)
    cost: Decimal | None = None
    roll = rng.random()
    if roll < 0.35:
        cost = random_amount(rng, float(effective) * rng.uniform(0.4, 0.85))  # margin 15-60%
    elif roll < 0.42:
        cost = random_amount(rng, float(effective) * rng.uniform(0.92, 1.05))  # under the floor
    elif roll < 0.45:
        cost = cents(effective * (1 - Decimal(oracle.floor.numerator) / oracle.floor.denominator / 100))
    command = set_price(
        sku,
        selling,
        cost,
        actor="random-pricer",
        discount_price=str(discount) if discount is not None else None,
    )
    return command, effective, cents(cost) if cost is not None else None


async def test_history_after_1000_random_changes_matches_an_oracle(
    edge: httpx.AsyncClient, db: asyncpg.Connection, producer: h.CommandProducer, stack: Settings
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    sku = await registered(edge)
    oracle = PriceOracle(Fraction(stack.price_approval_threshold_pct), Fraction(stack.margin_floor_pct))
    commands: list[dict[str, Any]] = []
    set_prices = 0
    while set_prices < 1000:
        if oracle.pending and rng.random() < 0.3:
            change_id = rng.choice(sorted(oracle.pending))
            if rng.random() < 0.5:
                commands.append(price_command("approve_price_change", sku, "approver", change_id=change_id))
                oracle.approve(change_id, "approver")
            else:
                commands.append(price_command("reject_price_change", sku, "approver", change_id=change_id))
                oracle.reject(change_id)
            continue
        command, effective, cost = random_set_price(rng, oracle, sku)
        commands.append(command)
        oracle.set_price(command["command_id"], effective, cost)
        set_prices += 1
    for change_id in sorted(oracle.pending):  # leave nothing in the approval queue
        commands.append(price_command("reject_price_change", sku, "approver", change_id=change_id))
        oracle.reject(change_id)
    held = len(oracle.decided)
    assert held > 20, f"seed {seed}: too few held changes to test the holds"

    started = time.monotonic()
    await producer.publish((sku.encode(), h.encode(c), None) for c in commands)
    found = await processed(db, commands, within=60)
    elapsed = time.monotonic() - started
    rejected = {k: v for k, v in found.items() if v[0] != "applied"}
    assert not rejected, f"seed {seed}: {list(rejected.items())[:5]}"

    history = [
        Entry(
            money(e["old_price"]), Decimal(e["new_price"]), e["change_type"], e["change_id"], e["approved_by"]
        )
        for e in await full_history(edge, sku)
    ]
    assert len(history) == len(oracle.history), f"seed {seed}"
    for i, (got, want) in enumerate(zip(history, oracle.history, strict=True)):
        assert got == want, f"seed {seed}: history entry {i} differs"
    price = await eur(edge, sku)
    assert Decimal(price["effective_price"]) == oracle.effective, f"seed {seed}"
    assert money(price["cost_price"]) == oracle.cost, f"seed {seed}"
    assert price["version"] == oracle.version, f"seed {seed}"
    rows = await db.fetch("SELECT change_id::text AS id, status FROM price_changes WHERE sku = $1", sku)
    statuses = {r["id"]: r["status"] for r in rows}
    assert statuses == oracle.decided, f"seed {seed}"
    print(
        f"\n1,000 random changes (seed {seed}): {len(commands)} commands, {len(oracle.history)} applied,"
        f" {held} held ({sum(v == 'approved' for v in oracle.decided.values())} approved),"
        f" processed in {elapsed:.2f}s"
    )


# --- e. lowest price in the 30 days before a date -------------------------------------------------------


class Row(NamedTuple):
    id: int
    created_at: datetime
    price: Decimal


def brute_force_lowest(rows: list[Row], at: datetime) -> Decimal | None:
    """The price in force when the period [at - 30 days, at) began, and every price set during it."""
    begin = at - timedelta(days=30)
    in_force = [r for r in rows if r.created_at <= begin]
    candidates = [r.price for r in rows if begin <= r.created_at < at]
    if in_force:
        candidates.append(max(in_force, key=lambda r: (r.created_at, r.id)).price)
    return min(candidates, default=None)


async def insert_history(
    conn: asyncpg.Connection, sku: str, points: list[tuple[datetime, Decimal]]
) -> list[Row]:
    records = []
    previous: Decimal | None = None
    for created_at, price in points:
        records.append(
            (
                uuid.uuid4(),
                uuid.uuid4(),
                sku,
                "EUR",
                previous,
                price,
                price,
                "manual",
                "synthetic",
                created_at,
            )
        )
        previous = price
    await conn.copy_records_to_table(
        "price_history",
        records=records,
        columns=(
            "change_id",
            "command_id",
            "sku",
            "currency",
            "old_price",
            "new_price",
            "selling_price",
            "change_type",
            "requested_by",
            "created_at",
        ),
    )
    rows = await conn.fetch(
        "SELECT id, created_at, new_price FROM price_history WHERE sku = $1 AND currency = 'EUR'", sku
    )
    return [Row(r["id"], r["created_at"], r["new_price"]) for r in rows]


async def test_lowest_prior_price_matches_brute_force(
    edge: httpx.AsyncClient, db: asyncpg.Connection, stack: Settings
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    sku = f"LOW-{uuid.uuid4().hex[:12].upper()}"
    origin = datetime(2026, 3, 1, tzinfo=UTC)
    span_us = 90 * 24 * 3600 * 10**6
    times = sorted(origin + timedelta(microseconds=rng.randrange(span_us)) for _ in range(300))
    for i in rng.sample(range(1, len(times)), 30):  # several rows of one batch share created_at
        times[i] = times[i - 1]
    times.sort()
    rows = await insert_history(db, sku, [(t, Decimal(rng.randint(100, 20000)) / 100) for t in times])
    assert len(rows) == 300

    instants = [
        origin
        + timedelta(microseconds=rng.randrange(-5 * 24 * 3600 * 10**6, span_us + 40 * 24 * 3600 * 10**6))
        for _ in range(170)
    ]
    for row in rng.sample(rows, 10):
        instants += [
            row.created_at,
            row.created_at + timedelta(days=30, microseconds=1),
            row.created_at + timedelta(days=30, microseconds=-1),
        ]
    instants.append(origin - timedelta(days=1))  # before any price
    assert len(instants) == 201

    engine = make_engine(stack.database_url, pool_size=1)
    mismatches = []
    try:
        async with engine.connect() as conn:
            for at in instants:
                got = await lowest_prior_price(conn, sku, "EUR", at)
                want = brute_force_lowest(rows, at)
                if got != want:
                    mismatches.append((at.isoformat(), got, want))
    finally:
        await engine.dispose()
    assert not mismatches, f"seed {seed}: {len(mismatches)} of {len(instants)} differ, e.g. {mismatches[:3]}"
    assert sum(brute_force_lowest(rows, at) is None for at in instants) >= 1

    for at in rng.sample(instants, 5):
        response = await edge.get(f"/v1/items/{sku}/prices/EUR/lowest-prior", params={"at": at.isoformat()})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (datetime.fromisoformat(body["at"]), body["days"]) == (at, 30)
        assert money(body["lowest_price"]) == brute_force_lowest(rows, at), (
            f"seed {seed}: at {at.isoformat()}"
        )


async def test_a_price_replaced_exactly_at_the_period_start_does_not_count(
    stack: Settings, db: asyncpg.Connection
) -> None:
    sku = f"LOW-{uuid.uuid4().hex[:12].upper()}"
    replaced_at = datetime(2026, 4, 2, 12, tzinfo=UTC)
    await insert_history(
        db, sku, [(replaced_at - timedelta(days=1), Decimal("5.00")), (replaced_at, Decimal("10.00"))]
    )
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            lowest = await lowest_prior_price(conn, sku, "EUR", replaced_at + timedelta(days=30))
    finally:
        await engine.dispose()
    assert lowest == Decimal("10.00")
