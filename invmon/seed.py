"""Demo data for `invmon seed`, published to Kafka like any upstream system would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from contracts.stock_commands import ReceiveStock, RegisterItem, StockCommand
from contracts.topics import STOCK_COMMANDS
from infra.kafka import make_broker
from infra.settings import Settings

_NAMESPACE = uuid.UUID("0b6f8a52-58a6-4d1c-9d2b-5a4f0d5e7c11")
_ITEMS = (
    ("MUG-BLUE", "Blue mug", "kitchen", 40, 10, Decimal("2.35")),
    ("MUG-RED", "Red mug", "kitchen", 8, 10, Decimal("2.35")),
    ("TEA-GREEN-100", "Green tea, 100 bags", "pantry", 120, 30, Decimal("3.10")),
    ("KETTLE-1L", "Kettle 1 l", "appliances", 0, 2, Decimal("18.00")),
)


def demo_commands(now: datetime) -> list[StockCommand]:
    """Fixed command ids, so seeding twice applies once."""
    commands: list[StockCommand] = []
    for sku, name, category, quantity, minimum, cost in _ITEMS:
        envelope = {"sku": sku, "issued_at": now, "actor": "invmon-seed", "source": "seed"}
        commands.append(
            RegisterItem(
                command_id=uuid.uuid5(_NAMESPACE, f"register:{sku}"),
                name=name,
                category=category,
                min_stock_level=minimum,
                max_stock_level=minimum * 20,
                cost_price=cost,
                **envelope,
            )
        )
        if quantity:
            commands.append(
                ReceiveStock(
                    command_id=uuid.uuid5(_NAMESPACE, f"receive:{sku}"), quantity=quantity, **envelope
                )
            )
    return commands


async def publish_demo_data(settings: Settings) -> int:
    broker = make_broker(settings, client_id="invmon-seed")
    await broker.connect()
    try:
        commands = demo_commands(datetime.now(UTC))
        for command in commands:
            await broker.publish(
                command.model_dump_json().encode(),
                STOCK_COMMANDS.name,
                key=command.sku.encode(),
                headers={"content-type": "application/json"},
            )
    finally:
        await broker.stop()
    return len(commands)
