"""`invmon simulate`: realistic traffic through the edge, for demos, dashboards and alert rules.

Sales reserve and then fulfil, stock is restocked and cycle-counted, prices move a little, all over HTTP
with an API key as an upstream system would send them; now and then a malformed record goes straight to
the stock command topic, so the dead-letter path and its reasons show up too. The closing summary counts
what the edge answered (its /metrics count the same requests) and, through the command status API, how
many bad records were dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts.topics import STOCK_COMMANDS
from infra.credentials import new_api_key, split_api_key
from infra.kafka import raw_producer
from infra.settings import Settings, get_settings
from invmon.cli_auth import add_key, revoke_key

SKU_PREFIX = "SIM-"
CURRENCY = "EUR"
INITIAL_ON_HAND = 200
COST = Decimal("2.00")
START_PRICE = Decimal("4.00")
HEADERS = [("content-type", b"application/json")]
# Shares of the traffic (the rest of a sale's life is its fulfilment, sent when its reservation is taken).
MIX = (("sale", 0.55), ("restock", 0.2), ("count", 0.1), ("price", 0.15))


def sku_name(index: int) -> str:
    return f"{SKU_PREFIX}{index:04d}"


@dataclass(slots=True)
class Shelf:
    """What simulate believes of one SKU, so most commands it sends are ones the rules accept."""

    on_hand: int = INITIAL_ON_HAND
    reserved: int = 0
    open: list[tuple[str, int]] = field(default_factory=list)  # reservations to fulfil, oldest first
    price: Decimal = START_PRICE


@dataclass(frozen=True, slots=True)
class Request:
    kind: str
    sku: str
    route: str  # the edge's route template: its metrics count requests by it
    body: dict[str, Any]
    reservation: str = ""
    quantity: int = 0  # a fulfilment's reserved units, which it takes off on-hand

    @property
    def path(self) -> str:
        return self.route.format(sku=self.sku, reservation_id=self.reservation)


class Shop:
    """The traffic model: pure, seeded, no I/O. `next()` picks the next command; `taken()` and `refused()`
    tell it what the edge answered."""

    def __init__(self, skus: int, rng: random.Random) -> None:
        self.rng = rng
        self.shelves = {sku_name(i): Shelf() for i in range(skus)}
        self.serial = 0
        self.run = uuid.uuid4().hex[:6]

    def next(self) -> Request:
        sku = self.rng.choice(list(self.shelves))
        shelf = self.shelves[sku]
        if shelf.open and self.rng.random() < 0.5:
            reservation, quantity = shelf.open.pop(0)
            route = "/v1/items/{sku}/reservations/{reservation_id}/fulfil"
            return Request("fulfil", sku, route, {}, reservation, quantity)
        kind = self.rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        available = shelf.on_hand - shelf.reserved
        if kind == "sale" and available < 10:
            kind = "restock"
        if kind == "sale":
            self.serial += 1
            reservation = f"sim-{self.run}-{self.serial}"
            quantity = self.rng.randint(1, 5)
            body = {"reservation_id": reservation, "quantity": quantity}
            return Request("reserve", sku, "/v1/items/{sku}/reservations", body)
        if kind == "restock":
            return Request("restock", sku, "/v1/items/{sku}/receipts", {"quantity": self.rng.randint(20, 60)})
        if kind == "count":
            counted = max(shelf.reserved, shelf.on_hand - self.rng.randint(0, 2))  # a little shrinkage
            return Request("count", sku, "/v1/items/{sku}/counts", {"counted_quantity": counted})
        # A few per cent either way: small moves apply at once, large ones would wait for approval.
        step = Decimal(self.rng.choice((-3, -2, -1, 1, 2, 3))) / 100
        price = max(COST + Decimal("0.50"), (shelf.price * (1 + step)).quantize(Decimal("0.01")))
        body = {"currency": CURRENCY, "selling_price": str(price)}
        return Request("price", sku, "/v1/items/{sku}/prices", body)

    def taken(self, request: Request) -> None:
        """The edge accepted it (202): assume the worker applies it."""
        shelf = self.shelves[request.sku]
        if request.kind == "reserve":
            shelf.reserved += request.body["quantity"]
            shelf.open.append((request.body["reservation_id"], request.body["quantity"]))
        elif request.kind == "fulfil":
            shelf.on_hand -= request.quantity
            shelf.reserved -= request.quantity
        elif request.kind == "restock":
            shelf.on_hand += request.body["quantity"]
        elif request.kind == "count":
            shelf.on_hand = request.body["counted_quantity"]
        elif request.kind == "price":
            shelf.price = Decimal(request.body["selling_price"])

    def bad_record(self, actor: str) -> tuple[uuid.UUID, bytes, bytes]:
        """(command id, key, value): a receipt of a negative quantity, which no schema accepts. Sent as
        `actor`, so the command status API shows its dead letter to the key that sent the traffic."""
        sku = self.rng.choice(list(self.shelves))
        command_id = uuid.uuid4()
        value = {
            "type": "receive_stock",
            "command_id": str(command_id),
            "sku": sku,
            "issued_at": datetime.now(UTC).isoformat(),
            "actor": actor,
            "source": "simulate",
            "quantity": -1,
        }
        return command_id, sku.encode(), json.dumps(value).encode()


@dataclass(slots=True)
class Summary:
    """What one run sent and what became of it. HTTP figures cover every command POST (the set-up's
    registrations too), so they match the edge's invmon_edge_requests_total for those routes."""

    statuses: Counter[int] = field(default_factory=Counter)  # command POSTs by HTTP status
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # every request: (route, status)
    actor: str = ""
    by_kind: Counter[str] = field(default_factory=Counter)
    transport_errors: int = 0
    setup_accepted: int = 0  # the registrations and first prices among `statuses[202]`
    bad_records: int = 0
    dead_lettered: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def http_sent(self) -> int:
        return sum(self.statuses.values()) + self.transport_errors

    @property
    def sent(self) -> int:
        return self.http_sent + self.bad_records

    @property
    def accepted(self) -> int:
        return self.statuses[202]

    @property
    def refused(self) -> dict[int, int]:
        return {status: n for status, n in sorted(self.statuses.items()) if 400 <= status < 500}

    @property
    def commands_per_s(self) -> float:
        """Accepted commands a second over the timed traffic (the set-up is not timed)."""
        traffic = self.accepted - self.setup_accepted
        return traffic / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "http_sent": self.http_sent,
            "accepted": self.accepted,
            "refused": self.refused,
            "statuses": dict(sorted(self.statuses.items())),
            "requests": [[route, status, n] for (route, status), n in sorted(self.requests.items())],
            "actor": self.actor,
            "transport_errors": self.transport_errors,
            "bad_records": self.bad_records,
            "dead_lettered": self.dead_lettered,
            "by_kind": dict(self.by_kind),
            "elapsed_s": round(self.elapsed_s, 3),
            "commands_per_s": round(self.commands_per_s, 2),
            "p50_ms": self.percentile_ms(0.50),
            "p99_ms": self.percentile_ms(0.99),
        }

    def table(self) -> Table:
        table = Table(title="simulate", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")

        def ms(value: float | None) -> str:
            return "—" if value is None else f"{value:.1f} ms"

        rows = [
            ("sent", f"{self.sent} ({self.http_sent} HTTP, {self.bad_records} bad records to Kafka)"),
            ("accepted (202)", str(self.accepted)),
            *((f"refused ({status})", str(n)) for status, n in self.refused.items()),
            *((f"HTTP {s}", str(n)) for s, n in sorted(self.statuses.items()) if s >= 500),
            ("transport errors", str(self.transport_errors)),
            ("dead-lettered", f"{self.dead_lettered} of {self.bad_records}"),
            ("commands/s achieved", f"{self.commands_per_s:.1f}"),
            ("HTTP p50 / p99", f"{ms(self.percentile_ms(0.5))} / {ms(self.percentile_ms(0.99))}"),
        ]
        for name, value in rows:
            table.add_row(name, value)
        return table


class Simulator:
    def __init__(self, settings: Settings, client: httpx.AsyncClient, actor: str, summary: Summary) -> None:
        self.settings = settings
        self.client = client
        self.actor = actor
        self.summary = summary

    async def call(self, method: str, route: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """One request, timed and counted under the edge's route template; None when no HTTP answer came."""
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError:
            self.summary.transport_errors += 1
            return None
        self.summary.requests[(route, response.status_code)] += 1
        if method == "POST":  # commands; reads are counted above but make no latency or status figure
            self.summary.latencies_s.append(time.perf_counter() - started)
            self.summary.statuses[response.status_code] += 1
        return response

    async def post(self, route: str, path: str, body: dict[str, Any]) -> int | None:
        response = await self.call("POST", route, path, json=body)
        return None if response is None else response.status_code

    async def get(self, route: str, path: str, **params: Any) -> Any:
        response = await self.call("GET", route, path, params=params)
        if response is None:
            raise RuntimeError(f"no answer from the edge for GET {path}")
        response.raise_for_status()
        return response.json()

    async def existing(self) -> set[str]:
        found: set[str] = set()
        after: str | None = None
        while True:
            params: dict[str, Any] = {"q": SKU_PREFIX, "limit": 500}
            if after:
                params["after"] = after
            page = await self.get("/v1/items", "/v1/items", **params)
            found |= {item["sku"] for item in page["items"] if item["sku"].startswith(SKU_PREFIX)}
            after = page["next_after"]
            if after is None:
                return found

    async def register(self, shop: Shop, within_s: float) -> None:
        """Register the SKUs not there yet (a rerun reuses them) and wait until the worker has them."""
        missing = set(shop.shelves) - await self.existing()
        for sku in sorted(missing):
            body = {
                "sku": sku,
                "name": f"Simulated item {sku.removeprefix(SKU_PREFIX)}",
                "category": "simulated",
                "initial_quantity": INITIAL_ON_HAND,
                "min_stock_level": 20,
                "max_stock_level": 2000,
                "cost_price": str(COST),
            }
            await self.post("/v1/items", "/v1/items", body)
        deadline = time.monotonic() + within_s
        while missing - await self.existing():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stock worker did not register {len(missing)} SKUs in {within_s} s")
            await asyncio.sleep(0.25)  # polling the read API: the worker answers nothing else
        for sku in sorted(missing):  # a price needs its item: only once the stock worker has it
            price = {"currency": CURRENCY, "selling_price": str(START_PRICE), "cost_price": str(COST)}
            await self.post("/v1/items/{sku}/prices", f"/v1/items/{sku}/prices", price)
        self.summary.setup_accepted = self.summary.accepted
        for sku, shelf in shop.shelves.items():
            item = await self.get("/v1/items/{sku}", f"/v1/items/{sku}")
            shelf.on_hand, shelf.reserved = item["on_hand"], item["reserved"]

    async def dead_lettered(self, ids: list[uuid.UUID], within_s: float) -> int:
        """How many of the bad records the command status API reports dead-lettered, waiting up to
        `within_s` for the worker to get to them."""
        pending = set(ids)
        deadline = time.monotonic() + within_s
        while pending:
            for command_id in list(pending):
                status = await self.get("/v1/commands/{command_id}", f"/v1/commands/{command_id}")
                if status["status"] == "dead_lettered":
                    pending.discard(command_id)
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        return len(ids) - len(pending)


async def simulate(
    settings: Settings,
    *,
    base_url: str,
    api_key: str,
    rate: float,
    duration_s: float,
    skus: int = 20,
    bad_per_mille: float = 10.0,
    concurrency: int = 32,
    seed: int | None = None,
    settle_s: float = 30.0,
    console: Console | None = None,
) -> Summary:
    """Send `rate` commands a second for `duration_s` seconds and return what happened to them."""
    split = split_api_key(api_key)
    if split is None:
        raise ValueError("not an API key")
    actor = f"key:{split[0]}"
    rng = random.Random(seed)
    shop = Shop(skus, rng)
    summary = Summary(actor=actor)
    total = max(1, round(rate * duration_s))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"X-API-Key": api_key}
    producer = raw_producer(settings, client_id="invmon-simulate")
    bad_ids: list[uuid.UUID] = []
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30.0) as client:
        sim = Simulator(settings, client, actor, summary)
        await sim.register(shop, within_s=settle_s)
        await producer.start()
        try:
            slots = asyncio.Semaphore(concurrency)
            tasks: set[asyncio.Task[None]] = set()

            async def one(request: Request) -> None:
                try:
                    if await sim.post(request.route, request.path, request.body) == 202:
                        shop.taken(request)
                finally:
                    slots.release()

            progress = Progress(
                TextColumn("[bold]simulate"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            with progress:
                bar = progress.add_task("traffic", total=total, note="")
                started = time.perf_counter()
                for index in range(total):
                    # Paced on a fixed schedule: a slow answer delays the next send only when every slot
                    # is busy, and then the summary's commands/s shows the shortfall.
                    delay = started + index / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if rng.random() * 1000 < bad_per_mille:
                        command_id, key, value = shop.bad_record(actor)
                        await producer.send_and_wait(STOCK_COMMANDS.name, value, key=key, headers=HEADERS)
                        bad_ids.append(command_id)
                        summary.bad_records += 1
                        summary.by_kind["bad_record"] += 1
                    else:
                        request = shop.next()
                        summary.by_kind[request.kind] += 1
                        await slots.acquire()
                        task = asyncio.create_task(one(request))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    refused = sum(summary.refused.values())
                    progress.update(bar, advance=1, note=f"202: {summary.accepted}  4xx: {refused}")
                if tasks:
                    await asyncio.gather(*tasks)
                summary.elapsed_s = time.perf_counter() - started
        finally:
            await producer.stop()
        summary.dead_lettered = await sim.dead_lettered(bad_ids, settle_s)
    return summary


async def _with_key(
    settings: Settings, api_key: str | None, run: Callable[[str], Awaitable[Summary]]
) -> Summary:
    """Run with the given key, or with a key made for this run (operator + pricing, audited like
    `invmon apikey create`) and revoked when it ends."""
    if api_key:
        return await run(api_key)
    key_id, key, digest = new_api_key()
    await add_key(key_id, digest, "invmon simulate", ["operator", "pricing"])
    try:
        return await run(key)
    finally:
        await revoke_key(key_id)


def simulate_command(
    rate: Annotated[float, typer.Option("--rate", min=0.1, help="Commands a second to send.")] = 20.0,
    duration: Annotated[float, typer.Option("--duration", min=1, help="Seconds of traffic.")] = 30.0,
    skus: Annotated[int, typer.Option(min=1, max=5000, help="Items to trade (SIM-0000...).")] = 20,
    bad_per_mille: Annotated[
        float, typer.Option(min=0, max=1000, help="Malformed records per 1000, sent straight to Kafka.")
    ] = 10.0,
    concurrency: Annotated[int, typer.Option(min=1, max=512, help="HTTP requests in flight at most.")] = 32,
    seed: Annotated[int | None, typer.Option(help="Random seed, for a repeatable mix.")] = None,
    url: Annotated[str | None, typer.Option(help="The edge's base URL; default: this stack's edge.")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="Key with the operator and pricing roles; default: one made for the run and revoked after.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Send realistic traffic through the edge: sales (reserve, then fulfil), restocks, cycle counts, price
    changes, and the odd malformed record, which lands in the dead-letter topic."""
    settings = get_settings()
    console = Console(stderr=json_out)
    base_url = url or f"http://127.0.0.1:{settings.edge_port}"

    async def run(key: str) -> Summary:
        return await simulate(
            settings,
            base_url=base_url,
            api_key=key,
            rate=rate,
            duration_s=duration,
            skus=skus,
            bad_per_mille=bad_per_mille,
            concurrency=concurrency,
            seed=seed,
            console=console,
        )

    summary = asyncio.run(_with_key(settings, api_key, run))
    if json_out:
        print(json.dumps(summary.as_dict()))
    else:
        console.print(summary.table())
