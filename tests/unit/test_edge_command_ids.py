"""Command ids the edge publishes are scoped to their sender and unpredictable; batches refuse scheduler
commands and repeated ids by index; JSON beyond the parser's limits is an error the edge can answer."""

from __future__ import annotations

import hmac
import json
import uuid

import pytest

from api_edge import batch, bodies, command_ids, commands, idempotency, price_commands
from api_edge.intake import CommandRoute
from contracts.price_commands import ActivateScheduledPrice, ExpireScheduledPrice
from contracts.stock_commands import ExpireReservation

SECRET = "a-test-secret-of-at-least-32-bytes-long"
KEY = command_ids._derive(SECRET)


def test_a_scoped_id_depends_on_principal_value_and_key() -> None:
    client_id = uuid.UUID("6f1c2b9e-3d0a-4f5e-9b1a-2c3d4e5f6a7b")
    mine = command_ids.from_client(KEY, "user:alice", client_id)
    assert mine == command_ids.from_client(KEY, "user:alice", uuid.UUID(str(client_id).upper()))
    assert mine != client_id
    assert mine.version == 8
    assert mine.variant == uuid.RFC_4122
    assert mine != command_ids.from_client(KEY, "user:bob", client_id)
    assert mine != command_ids.from_client(command_ids._derive("x" * 40), "user:alice", client_id)
    # The cached, copied MAC is HMAC-SHA256 under the derived key, used afresh for every id.
    derived = hmac.digest(SECRET.encode(), b"invmon/command-id/v1", "sha256")
    message = command_ids.length_prefixed("user:alice", f"cmd:{client_id}")
    expected = hmac.digest(derived, message, "sha256")[:16]
    assert mine.bytes[:6] == expected[:6]
    assert mine.bytes[9:] == expected[9:]
    # A client id and an Idempotency-Key with the same text are different values.
    assert mine != command_ids.from_idempotency_key(KEY, "user:alice", str(client_id))


def test_the_old_idempotency_id_is_not_the_new_one() -> None:
    """The id an Idempotency-Key got before was uuid5 of a public namespace: anybody could compute it."""
    old = uuid.uuid5(uuid.UUID("5b0c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4"), "user:bob\nkey-1")
    assert command_ids.from_idempotency_key(KEY, "user:bob", "key-1") != old


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("user:a:b", "c"), ("user:a", "b:c")),
        (("user:a", "b\nc"), ("user:a\nb", "c")),
        (("ab", ""), ("a", "b")),
    ],
)
def test_pairs_that_joined_texts_would_confuse_stay_apart(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert idempotency.redis_key(*a) != idempotency.redis_key(*b)
    assert command_ids.scoped_id(KEY, *a) != command_ids.scoped_id(KEY, *b)
    assert idempotency.redis_key(*a).startswith("invmon:idem:")


def test_no_single_route_sends_a_scheduler_command() -> None:
    routes: list[CommandRoute] = [*commands.stock.routes, *price_commands.prices.routes]
    scheduler = {ExpireReservation, ActivateScheduledPrice, ExpireScheduledPrice}
    assert set(batch.SCHEDULER_ONLY) == scheduler
    assert not {route.kind for route in routes} & scheduler


def receipt(**fields: object) -> dict[str, object]:
    return {"type": "receive_stock", "sku": "A-1", "quantity": 1, **fields}


def test_a_batch_refuses_scheduler_commands_and_repeated_ids_by_index() -> None:
    own = str(uuid.uuid4())
    items = [
        receipt(command_id=own),
        {"type": "expire_reservation", "sku": "A-1", "reservation_id": "r"},
        receipt(command_id=own.upper()),  # the same UUID, spelled otherwise
        receipt(command_id="not-a-uuid"),
        receipt(),
    ]
    checked = batch._validate(items, batch._STOCK_LIST, "user:alice", None, KEY)
    assert [e["index"] for e in checked.errors] == [1, 2, 3]
    assert "expire_reservation" in checked.errors[0]["errors"][0]["msg"]
    assert checked.errors[1]["errors"] == [
        {"loc": ["command_id"], "msg": "repeats the command_id of the command at index 0"}
    ]
    published = {a["index"]: a["command_id"] for a in checked.accepted}
    assert published[0] == str(command_ids.from_client(KEY, "user:alice", uuid.UUID(own)))
    assert [str(c.command_id) for c in checked.commands] == [published[0], published[4]]


def test_a_price_batch_refuses_the_schedulers_commands() -> None:
    change = str(uuid.uuid4())
    items = [
        {"type": kind, "sku": "A-1", "change_id": change}
        for kind in ("activate_scheduled_price", "expire_scheduled_price")
    ]
    checked = batch._validate(items, batch._PRICE_LIST, "user:p", None, KEY)
    assert [e["index"] for e in checked.errors] == [0, 1]
    assert not checked.commands


def test_a_valid_batch_publishes_scoped_ids_in_one_pass() -> None:
    own = uuid.uuid4()
    checked = batch._validate(
        [receipt(command_id=str(own)), receipt()], batch._STOCK_LIST, "key:k1", None, KEY
    )
    assert not checked.errors
    assert checked.commands[0].command_id == command_ids.from_client(KEY, "key:k1", own)
    assert [a["command_id"] for a in checked.accepted] == [str(c.command_id) for c in checked.commands]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1000 + "]" * 1000,
        json.dumps([receipt(quantity=0)])[:-2] + ', "x": ' + "[" * 1000 + "]" * 1000 + "}]",
        "[" + "9" * 4400 + "]",
        '[{"quantity": -' + "9" * 4400 + "}]",
    ],
    ids=["deep array", "deep field", "huge integer", "huge negative integer"],
)
def test_json_beyond_the_parsers_limits_is_refused_as_such(text: str) -> None:
    """pydantic-core's messages for these are what `bodies.loads` recognises: if they change, this fails."""
    with pytest.raises(bodies.JsonBeyondLimits):
        bodies.loads(text.encode())


def test_malformed_json_is_a_plain_value_error() -> None:
    with pytest.raises(ValueError, match="EOF while parsing") as error:
        bodies.loads(b"[1,")
    assert not isinstance(error.value, bodies.JsonBeyondLimits)
