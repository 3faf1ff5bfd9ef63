"""A bad record travels to the DLQ with its reason, `invmon dlq list` shows it, `invmon dlq replay` sends
the original bytes back to the command topic (where, still bad, it is dead-lettered again, not lost)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from contracts.stock_commands import ReceiveStock, RegisterItem
from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.settings import Settings
from invmon import dlq
from invmon.cli import app
from invmon.dlq import REPLAYED_HEADER, DeadLetter
from tests.e2e.support import new_sku
from tests.integration.helpers import pg_dsn, wait_until
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


async def find(settings: Settings, marker: bytes, count: int, within: float = 20.0) -> list[DeadLetter]:
    async def poll() -> list[DeadLetter]:
        while True:
            found = [x async for x in dlq.read(settings, STOCK_COMMANDS_DLQ.name)]
            hits = [x for x in found if x.headers.get("x-marker") == marker]
            if len(hits) >= count:
                return hits
            await asyncio.sleep(0.2)  # poll interval while waiting for a condition

    return await asyncio.wait_for(poll(), within)


async def test_dead_letter_list_and_replay(pipeline: dict[str, Process], stack: Settings) -> None:
    marker = uuid.uuid4().hex.encode()
    body = json.dumps({"type": "receive_stock", "sku": "DLQ-1", "quantity": "many"}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(STOCK_COMMANDS.name, body, key=b"DLQ-1", headers=[("x-marker", marker)])
    finally:
        await producer.stop()

    [letter] = await find(stack, marker, 1)
    assert letter.value == body
    assert "quantity" in letter.reason
    assert letter.origin.startswith(f"{STOCK_COMMANDS.name}:")

    runner = CliRunner()
    # The CLI runs its own event loop, so it gets a thread of its own.
    listed = await asyncio.to_thread(runner.invoke, app, ["dlq", "list", "--last", "100000"])
    assert listed.exit_code == 0, listed.output
    assert f"{letter.partition}:{letter.offset}" in listed.output

    at = f"{letter.partition}:{letter.offset}"
    replayed = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay", "--at", at])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 record" in replayed.output

    first, second = sorted(
        await find(stack, marker, 2), key=lambda x: x.headers.get(REPLAYED_HEADER) is not None
    )
    assert second.value == body
    assert (
        second.headers[REPLAYED_HEADER]
        == f"{STOCK_COMMANDS_DLQ.name}:{first.partition}:{first.offset}".encode()
    )


def test_replay_refuses_unknown_positions_and_needs_a_choice(stack: Settings) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["dlq", "replay"]).exit_code != 0
    missing = runner.invoke(app, ["dlq", "replay", "--at", "0:999999999"])
    assert missing.exit_code == 1
    assert "not in" in missing.output


async def test_a_command_postgresql_refuses_is_dead_lettered_and_its_partition_moves_on(
    pipeline: dict[str, Process], stack: Settings
) -> None:
    """The command passes its contract, but PostgreSQL refuses it (here a trigger stands in for whatever
    the database may refuse). The batch is applied again one command at a time: the refused command goes to
    the DLQ with PostgreSQL's reason, the others in its batch are applied, and a later command for the
    same SKU is handled (nothing waits behind the refused one)."""
    marker = uuid.uuid4().hex.encode()
    refused, fine = new_sku(), [new_sku(), new_sku()]
    conn = await asyncpg.connect(pg_dsn(stack))
    trigger = f"refuse_{marker.decode()}"
    await conn.execute(
        f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.sku = '{refused}' THEN RAISE EXCEPTION 'test refuses %', NEW.sku USING ERRCODE = '22023';"
        " END IF; RETURN NEW; END $$;"
        f" CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON items"
        f" FOR EACH ROW EXECUTE FUNCTION {trigger}()"
    )
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        now = datetime.now(UTC)
        registrations = {
            sku: RegisterItem(
                command_id=uuid.uuid4(), sku=sku, name="Refused?", initial_quantity=2, issued_at=now,
                actor="test", source="tests",
            )
            for sku in (fine[0], refused, fine[1])
        }  # fmt: skip
        # Sent together, so that they are likely one batch (the outcome must be the same if not).
        acks = [
            await producer.send(
                STOCK_COMMANDS.name,
                c.model_dump_json().encode(),
                key=sku.encode(),
                headers=[("x-marker", marker)],
            )
            for sku, c in registrations.items()
        ]
        await asyncio.gather(*acks)

        [letter] = await find(stack, marker, 1)
        assert letter.key == refused.encode()
        assert letter.value == registrations[refused].model_dump_json().encode()
        assert letter.reason.startswith("refused by PostgreSQL (22023)"), letter.reason
        assert f"test refuses {refused}" in letter.reason

        later = ReceiveStock(
            command_id=uuid.uuid4(), sku=refused, quantity=1, issued_at=now, actor="test", source="tests"
        )
        await producer.send_and_wait(
            STOCK_COMMANDS.name, later.model_dump_json().encode(), key=refused.encode()
        )

        async def status() -> str | None:
            value = await conn.fetchval(
                "SELECT status FROM processed_commands WHERE command_id = $1", later.command_id
            )
            return None if value is None else str(value)

        # The item was never registered, so the rules reject the receipt: handled, not stuck.
        outcome = await wait_until(status, lambda s: s is not None, within=20, what="the later command")
        assert outcome == "rejected"
        assert sorted(
            await conn.fetchval("SELECT array_agg(sku) FROM items WHERE sku = ANY($1)", fine)
        ) == sorted(fine)
        assert await conn.fetchval("SELECT count(*) FROM items WHERE sku = $1", refused) == 0
    finally:
        await producer.stop()
        await conn.execute(f"DROP TRIGGER IF EXISTS {trigger} ON items; DROP FUNCTION IF EXISTS {trigger}()")
        await conn.close()
