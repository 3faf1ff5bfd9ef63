"""Notifications end to end: the real edge, stock worker, outbox relay and notifier processes, a real
SMTP server (aiosmtpd) and real HTTP receivers in this process. The notifier runs with a compressed
retry schedule (0, 1 s, 2 s, 15 s, 1 s, ±20%) so retries are observable in seconds."""

from __future__ import annotations

import itertools
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from infra.settings import Settings
from tests.e2e.notify_support import Hit, Mailbox, Receiver, serving, smtp_server
from tests.e2e.support import new_sku
from tests.integration.helpers import wait_until
from tests.processes import Process, start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

SCHEDULE = [0.0, 1.0, 2.0, 15.0, 1.0]
JITTER = 0.2
# What a dispatcher may add to a due time: wake-up, claim query and the request itself on a shared box.
SLACK_S = 1.0
PUBLIC_URL = "https://inventory.example"


@dataclass
class Notifier:
    port: int
    log_dir: Path
    env: dict[str, str]
    process: Process | None = None

    def start(self) -> None:
        self.process = start("notifier", self.port, self.log_dir, self.env)
        wait_ready(self.process)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)


@pytest.fixture(scope="module")
def mail() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    async with serving("127.0.0.1") as running:
        yield running


@pytest.fixture(scope="module")
def notifier(
    pipeline: dict[str, Process],
    stack: Settings,
    mail: tuple[Mailbox, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Notifier]:
    env = {
        "INVMON_SMTP_HOST": "127.0.0.1",
        "INVMON_SMTP_PORT": str(mail[1]),
        "INVMON_NOTIFY_RETRY_SCHEDULE_S": json.dumps(SCHEDULE),
        "INVMON_NOTIFY_RETRY_JITTER": str(JITTER),
        "INVMON_PUBLIC_URL": PUBLIC_URL,
        "INVMON_WEBHOOK_ALLOWLIST": '["127.0.0.1"]',
        "PYTHONUNBUFFERED": "1",
    }
    handle = Notifier(stack.notifier_port, tmp_path_factory.mktemp("notifier"), env)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


async def subscribe(
    edge: httpx.AsyncClient, sku: str, types: list[str], channel: dict[str, Any]
) -> dict[str, Any]:
    response = await edge.post(
        "/v1/notifications/subscriptions",
        json={"name": f"test {sku}", "event_types": types, "skus": [sku], "channel": channel},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def register(edge: httpx.AsyncClient, sku: str, quantity: int, min_level: int = 0) -> None:
    response = await edge.post(
        "/v1/items",
        json={
            "sku": sku,
            "name": f"Lamp {sku}",
            "category": "lighting",
            "initial_quantity": quantity,
            "min_stock_level": min_level,
        },
    )
    assert response.status_code == 202, response.text


async def event_ids(db: asyncpg.Connection, sku: str, types: list[str]) -> set[str]:
    rows = await db.fetch(
        "SELECT event_id::text FROM outbox WHERE sku = $1 AND event_type = ANY($2::text[])"
        # A location's own alert goes only to subscriptions that list the location: none here.
        " AND NOT (channel = 'alerts' AND payload->>'location' IS NOT NULL)",
        sku,
        types,
    )
    return {r[0] for r in rows}


async def deliveries(edge: httpx.AsyncClient, sub_id: str) -> list[dict[str, Any]]:
    response = await edge.get(f"/v1/notifications/subscriptions/{sub_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def within_schedule(gap: float, step: float, slack: float = SLACK_S) -> bool:
    """Never early (the jitter's lower edge), at most the jitter's upper edge plus dispatch slack late."""
    return step * (1 - JITTER) - 0.05 <= gap <= step * (1 + JITTER) + slack


async def test_webhooks_are_signed_listed_replayed_and_rotated(
    notifier: Notifier, receiver: Receiver, edge: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    sku = new_sku()
    path = f"/ok/{sku}"
    types = ["item_registered", "stock_changed"]
    sub = await subscribe(edge, sku, types, {"kind": "webhook", "url": receiver.url(path)})
    secret = sub["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in (await edge.get(f"/v1/notifications/subscriptions/{sub['id']}")).json()

    await register(edge, sku, 3)
    assert (await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 2})).status_code == 202

    async def received() -> tuple[set[str], set[str]]:
        return set(receiver.by_id(path)), await event_ids(db, sku, types)

    ids, _expected = await wait_until(
        received, lambda v: len(v[1]) >= 2 and v[0] == v[1], within=30, what="a webhook per event"
    )
    for hit in receiver.of(path):
        payload = Webhook(secret).verify(hit.body, hit.headers)  # the independent library's verdict
        assert payload["data"]["event_id"] == hit.headers["webhook-id"]
        assert payload["data"]["sku"] == sku
        assert payload["type"] in types
    listed = await deliveries(edge, sub["id"])
    assert {d["event_id"] for d in listed} == ids
    for d in listed:
        assert d["status"] == "delivered"
        assert [a["status_code"] for a in d["attempt_log"]] == [200]
        assert d["attempt_log"][0]["latency_ms"] >= 0

    # Replay one: the receiver sees the same webhook-id again, and the attempt is listed.
    one = listed[0]
    assert (await edge.post(f"/v1/notifications/deliveries/{one['id']}/replay")).status_code == 200
    await wait_until(
        lambda: _count(receiver, path, one["event_id"]), lambda n: n == 2, within=15, what="the replay"
    )
    got = (await edge.get(f"/v1/notifications/deliveries/{one['id']}")).json()
    await wait_until(
        lambda: _attempts(edge, one["id"]), lambda n: n == 2, within=10, what="the replayed attempt listed"
    )
    assert got["event_id"] == one["event_id"]

    # Rotate: during the overlap both secrets verify the next webhook.
    rotated = await edge.post(f"/v1/notifications/subscriptions/{sub['id']}/rotate-secret", json={})
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert (await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 1})).status_code == 202
    await wait_until(received, lambda v: len(v[1]) >= 3 and v[0] == v[1], within=30, what="after rotation")
    latest = max(receiver.of(path), key=lambda h: h.at)
    assert len(latest.headers["webhook-signature"].split(" ")) == 2
    Webhook(new_secret).verify(latest.body, latest.headers)
    Webhook(secret).verify(latest.body, latest.headers)


async def _count(receiver: Receiver, path: str, msg_id: str) -> int:
    return len(receiver.by_id(path).get(msg_id, []))


async def _attempts(edge: httpx.AsyncClient, delivery_id: int) -> int:
    return len((await edge.get(f"/v1/notifications/deliveries/{delivery_id}")).json()["attempt_log"])


async def test_email_arrives_once_after_451s_and_a_550_is_recorded(
    notifier: Notifier, mail: tuple[Mailbox, int], edge: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    mailbox, _ = mail
    sku = new_sku()
    ops, nobody = f"ops-{sku.lower()}@example.com", f"nobody-{sku.lower()}@example.com"
    mailbox.temporary[ops] = 2
    mailbox.refused.add(nobody)
    good = await subscribe(edge, sku, ["low_stock_detected"], {"kind": "email", "recipients": [ops]})
    bad = await subscribe(edge, sku, ["low_stock_detected"], {"kind": "email", "recipients": [nobody]})

    await register(edge, sku, 10, min_level=5)
    response = await edge.post(f"/v1/items/{sku}/adjustments", json={"delta": -7, "reason_code": "damage"})
    assert response.status_code == 202, response.text

    async def inbox() -> int:
        return len(mailbox.to(ops))

    await wait_until(inbox, lambda n: n >= 1, within=40, what="the email after the 451s")
    [event_id] = await event_ids(db, sku, ["low_stock_detected"])
    [message] = mailbox.to(ops)
    assert message["Message-ID"].startswith(f"<{event_id}.")
    assert sku in message["Subject"]
    assert "Low stock" in message["Subject"]
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in message.walk()
        if not p.is_multipart()
    }
    link = f"{PUBLIC_URL}/dashboard/#/items/{sku}"
    assert link in parts["text/plain"]
    assert f'href="{link}"' in parts["text/html"]
    assert "Available: 3" in parts["text/plain"]
    assert "Minimum level: 5" in parts["text/plain"]
    assert f"Lamp {sku}" in parts["text/plain"]

    [delivered] = await wait_until(
        lambda: deliveries(edge, good["id"]),
        lambda ds: ds and ds[0]["status"] == "delivered",
        within=10,
        what="the delivery recorded",
    )
    assert [a["status_code"] for a in delivered["attempt_log"]] == [451, 451, 250]
    times = [datetime.fromisoformat(a["attempted_at"]).timestamp() for a in delivered["attempt_log"]]
    assert all(within_schedule(g, s) for g, s in zip(gaps(times), SCHEDULE[1:], strict=False)), times

    [refused] = await wait_until(
        lambda: deliveries(edge, bad["id"]),
        lambda ds: ds and ds[0]["status"] == "failed",
        within=20,
        what="the permanent failure recorded",
    )
    assert [a["status_code"] for a in refused["attempt_log"]] == [550]
    assert "550" in refused["last_error"]
    assert len(mailbox.to(ops)) == 1


async def test_status_codes_gone_disables_4xx_fails_redirect_retries_retry_after_waits(
    notifier: Notifier, receiver: Receiver, edge: httpx.AsyncClient
) -> None:
    sku = new_sku()
    types = ["item_registered"]
    started = datetime.now(UTC)
    subs = {
        kind: await subscribe(edge, sku, types, {"kind": "webhook", "url": receiver.url(f"/{kind}/{sku}")})
        for kind in ("gone", "missing", "redirect", "busy/3")
    }
    await register(edge, sku, 1)

    async def sub_state(kind: str) -> dict[str, Any]:
        found: dict[str, Any] = (await edge.get(f"/v1/notifications/subscriptions/{subs[kind]['id']}")).json()
        return found

    gone = await wait_until(
        lambda: sub_state("gone"), lambda s: not s["enabled"], within=20, what="410 disables"
    )
    assert "410" in gone["disabled_reason"]
    [missing] = await wait_until(
        lambda: deliveries(edge, subs["missing"]["id"]),
        lambda ds: ds and ds[0]["status"] == "failed",
        within=20,
        what="404 fails at once",
    )
    assert [a["status_code"] for a in missing["attempt_log"]] == [404]

    busy_path = f"/busy/3/{sku}"
    await wait_until(
        lambda: deliveries(edge, subs["busy/3"]["id"]),
        lambda ds: ds and ds[0]["status"] == "delivered",
        within=20,
        what="429 then 200",
    )
    [busy_hits] = receiver.by_id(busy_path).values()
    assert [h.status for h in busy_hits] == [429, 200]
    assert gaps([h.at for h in busy_hits])[0] >= 3 - 0.05  # Retry-After: 3 beats the 1 s step

    redirect_path = f"/redirect/{sku}"
    await wait_until(
        lambda: _hits(receiver, redirect_path), lambda n: n >= 2, within=20, what="the redirect retried"
    )
    [redirect] = await deliveries(edge, subs["redirect"]["id"])
    assert {a["status_code"] for a in redirect["attempt_log"]} == {302}
    assert redirect["status"] == "pending"
    assert redirect["event_id"] not in receiver.by_id("/ok/")  # never followed
    assert (await edge.delete(f"/v1/notifications/subscriptions/{subs['redirect']['id']}")).status_code == 204

    # Re-enable the 410 endpoint and replay its failures since the test began: the same webhook-id again.
    enabled = await edge.patch(
        f"/v1/notifications/subscriptions/{subs['gone']['id']}", json={"enabled": True}
    )
    assert enabled.json()["enabled"] is True
    assert enabled.json()["disabled_reason"] is None
    replayed = await edge.post(
        f"/v1/notifications/subscriptions/{subs['gone']['id']}/replay", json={"since": started.isoformat()}
    )
    assert replayed.json() == {"replayed": 1}
    gone_path = f"/gone/{sku}"
    await wait_until(lambda: _hits(receiver, gone_path), lambda n: n == 2, within=20, what="the replay")
    assert len(receiver.by_id(gone_path)) == 1


async def _hits(receiver: Receiver, path: str) -> int:
    return len(receiver.of(path))


async def test_ssrf_refused_at_registration_and_at_delivery(
    notifier: Notifier,
    edge: httpx.AsyncClient,
    admin_token: str,
    stack: Settings,
    db: asyncpg.Connection,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    async with serving("127.0.0.1") as canary, serving("127.0.0.2") as canary2:
        port, port2 = canary.port, canary2.port
        forms = [
            f"http://127.0.0.1:{port}/",
            f"http://[::1]:{port}/",
            "http://169.254.169.254/latest/meta-data/",
            f"http://10.0.0.1:{port}/",
            f"http://0x7f.1:{port}/",
            f"http://2130706433:{port}/",
            f"http://localhost:{port}/",
        ]
        # An edge without the test allowlist refuses every form at registration.
        strict = start(
            "edge",
            stack.edge_port + 7,
            tmp_path_factory.mktemp("strict-edge"),
            {"INVMON_EDGE_PORT": str(stack.edge_port + 7), "INVMON_WEBHOOK_ALLOWLIST": "[]"},
        )
        try:
            wait_ready(strict)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{stack.edge_port + 7}",
                headers={"Authorization": f"Bearer {admin_token}"},
                timeout=10,
            ) as strict_edge:
                for url in forms:
                    response = await strict_edge.post(
                        "/v1/notifications/subscriptions",
                        json={"name": "ssrf", "channel": {"kind": "webhook", "url": url}},
                    )
                    assert response.status_code == 422, (url, response.text)
                    assert response.headers["content-type"] == "application/problem+json"
                    assert response.json()["type"] == "/problems/webhook-url-refused", url
        finally:
            strict.stop()

        # Registered while harmless, then DNS "changed": the notifier checks again before each attempt.
        sku = new_sku()
        at_delivery = [
            f"http://127.0.0.2:{port2}/",
            f"http://0x7f.0.0.2:{port2}/",
            f"http://2130706434:{port2}/",
            f"http://[::1]:{port}/",
            "http://169.254.169.254/latest/meta-data/",
            f"http://10.0.0.1:{port}/",
        ]
        sub_ids = []
        for url in at_delivery:
            sub_id = uuid.uuid4()
            sub_ids.append(str(sub_id))
            await db.execute(
                """
                INSERT INTO notification_subscriptions (id, name, event_types, skus, kind, url, secret)
                VALUES ($1, 'ssrf', '{item_registered}', $2, 'webhook', $3, $4)
                """,
                sub_id,
                [sku],
                url,
                "whsec_" + "A" * 44,
            )
        await register(edge, sku, 1)
        for sub_id in sub_ids:
            [d] = await wait_until(
                lambda s=sub_id: deliveries(edge, s),
                lambda ds: ds and ds[0]["status"] == "failed",
                within=20,
                what="the refusal at delivery",
            )
            assert "refused" in d["attempt_log"][0]["error"]
        assert canary.hits == []
        assert canary2.hits == []

        # The test edge (allowlist 127.0.0.1) still refuses everything else.
        for url in (f"http://127.0.0.2:{port2}/", f"http://[::1]:{port}/", "http://10.0.0.1/"):
            response = await edge.post(
                "/v1/notifications/subscriptions",
                json={"name": "ssrf", "channel": {"kind": "webhook", "url": url}},
            )
            assert response.status_code == 422, (url, response.text)


async def test_flaky_receiver_and_a_sigkilled_notifier_lose_nothing(
    notifier: Notifier, receiver: Receiver, edge: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """500 for the first 3 attempts of each webhook, then 200; the notifier is SIGKILLed between the
    third and fourth attempts (the 15 s step) and started again. Every event arrives, every attempt
    follows the schedule within its jitter, and every attempt the receiver saw is recorded."""
    sku = new_sku()
    path = f"/flaky/3/{sku}"
    sub = await subscribe(edge, sku, ["stock_changed"], {"kind": "webhook", "url": receiver.url(path)})
    await register(edge, sku, 0)
    for quantity in (1, 2, 3):
        assert (await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": quantity})).status_code == 202

    async def attempts_recorded() -> list[int]:
        rows = await db.fetch(
            """
            SELECT count(a.id) FROM notification_deliveries d
            LEFT JOIN notification_attempts a ON a.delivery_id = d.id
            WHERE d.subscription_id = $1 GROUP BY d.id, d.event_at
            """,
            uuid.UUID(sub["id"]),
        )
        return [r[0] for r in rows]

    await wait_until(
        attempts_recorded,
        lambda c: len(c) == 3 and all(n == 3 for n in c),
        within=30,
        what="three recorded attempts of each of the three events",
    )
    notifier.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    notifier.start()

    expected = await event_ids(db, sku, ["stock_changed"])
    assert len(expected) == 3

    async def delivered() -> dict[str, list[int]]:
        return {i: [h.status for h in hits] for i, hits in receiver.by_id(path).items()}

    seen = await wait_until(
        delivered,
        lambda v: set(v) == expected and all(s[-1] == 200 for s in v.values()),
        within=60,
        what="every event delivered after the kill",
    )
    assert all(statuses == [500, 500, 500, 200] for statuses in seen.values()), seen
    for msg_id, hits in receiver.by_id(path).items():
        times = [h.at for h in hits]
        assert times[2] < killed_at < times[3], [t - killed_at for t in times]  # in the 15 s step
        assert all(within_schedule(g, s) for g, s in zip(gaps(times), SCHEDULE[1:], strict=False)), (
            msg_id,
            gaps(times),
        )
    listed = await wait_until(
        lambda: deliveries(edge, sub["id"]),
        lambda ds: all(d["status"] == "delivered" for d in ds),
        within=10,
        what="the deliveries recorded as delivered",
    )
    for d in listed:
        assert [a["status_code"] for a in d["attempt_log"]] == [500, 500, 500, 200]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            {
                "name": "x",
                "event_types": ["stock_exploded"],
                "channel": {"kind": "email", "recipients": ["a@example.com"]},
            },
            "event_types",
        ),
        ({"name": "x", "channel": {"kind": "email", "recipients": []}}, "recipients"),
        ({"name": "x", "channel": {"kind": "email", "recipients": ["not-an-address"]}}, "recipients"),
        ({"name": "x", "channel": {"kind": "webhook", "url": "ftp://example.com/x"}}, "url"),
        (
            {
                "name": "x",
                "channel": {"kind": "webhook", "url": "https://example.com/x", "secret": "whsec_c2hvcnQ="},
            },
            "secret",
        ),
        ({"name": "x", "channel": {"kind": "sms", "to": "+1"}}, "channel"),
        (
            {
                "name": "x",
                "locations": ["no spaces"],
                "channel": {"kind": "email", "recipients": ["a@b.org"]},
            },
            "locations",
        ),
    ],
)
async def test_bad_subscriptions_get_a_problem_naming_the_field(
    edge: httpx.AsyncClient, body: dict[str, Any], where: str
) -> None:
    response = await edge.post("/v1/notifications/subscriptions", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert any(
        where in [str(part) for part in error["loc"]] or where in error["msg"]
        for error in response.json()["errors"]
    ), response.json()


async def test_subscription_locations_are_kept_changed_and_audited(edge: httpx.AsyncClient) -> None:
    # A SKU of its own and deleted at the end: a subscription left matching every event would be sent the
    # other tests' events.
    sku = new_sku()
    created = await edge.post(
        "/v1/notifications/subscriptions",
        json={
            "name": "berlin",
            "event_types": ["low_stock_detected"],
            "skus": [sku],
            "locations": ["WH-EU-1"],
            "channel": {"kind": "email", "recipients": ["stock@example.com"]},
        },
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["locations"] == ["WH-EU-1"]
    path = f"/v1/notifications/subscriptions/{sub['id']}"
    changed = await edge.patch(path, json={"locations": ["WH-EU-1", "STORE-2"]})
    assert changed.status_code == 200, changed.text
    assert (await edge.get(path)).json()["locations"] == ["WH-EU-1", "STORE-2"]
    plain = await edge.post(
        "/v1/notifications/subscriptions",
        json={"name": "plain", "skus": [sku], "channel": {"kind": "email", "recipients": ["a@example.com"]}},
    )
    assert plain.json()["locations"] == []
    for one in (path, f"/v1/notifications/subscriptions/{plain.json()['id']}"):
        assert (await edge.delete(one)).status_code == 204

    trail = (await edge.get("/v1/admin/audit", params={"limit": 500})).json()["items"]
    ours = [r for r in reversed(trail) if r["target"] == f"subscription:{sub['id']}"]
    assert ours[0]["details"]["locations"] == ["WH-EU-1"]
    assert ours[1]["details"] == {"changes": {"locations": ["WH-EU-1", "STORE-2"]}}


async def test_a_per_location_alert_goes_only_to_the_subscription_naming_its_location(
    notifier: Notifier, receiver: Receiver, edge: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """One SKU, three webhooks: one naming the store, one naming another place, one naming none. The
    store's own low-stock alert reaches only the first; the SKU-level alert on the totals reaches all three
    (as it did before locations), and nobody gets anything twice."""
    sku = new_sku()
    store, elsewhere = (f"LOC-{uuid.uuid4().hex[:8].upper()}" for _ in range(2))
    for code in (store, elsewhere):
        made = await edge.post("/v1/locations", json={"code": code, "name": code, "kind": "store"})
        assert made.status_code == 201, made.text
    subs = {}
    for who, locations in (("store", [store]), ("elsewhere", [elsewhere]), ("none", [])):
        response = await edge.post(
            "/v1/notifications/subscriptions",
            json={
                "name": f"{who} {sku}",
                "event_types": ["low_stock_detected"],
                "skus": [sku],
                "locations": locations,
                "channel": {"kind": "webhook", "url": receiver.url(f"/ok/{who}-{sku}")},
            },
        )
        assert response.status_code == 201, response.text
        subs[who] = response.json()["id"]

    await register(edge, sku, 10, min_level=2)
    moves = [
        {"type": "receive_stock", "sku": sku, "quantity": 5, "location": store},
        # The store falls to its (the item's) minimum: its own alert; the total, 11, is fine.
        {"type": "adjust_stock", "sku": sku, "delta": -4, "reason_code": "damage", "location": store},
        # Now the total falls to 2 as well: the SKU-level alert (and default's own, wanted by nobody).
        {"type": "adjust_stock", "sku": sku, "delta": -9, "reason_code": "loss"},
    ]
    sent = await edge.post("/v1/commands/stock:batch", json=moves)
    assert sent.status_code == 202, sent.text

    async def alerts() -> list[tuple[str | None, str]]:
        rows = await db.fetch(
            "SELECT payload->>'location', event_id::text FROM outbox WHERE sku = $1 AND event_type = $2",
            sku,
            "low_stock_detected",
        )
        return [(r[0], r[1]) for r in rows]

    found = await wait_until(alerts, lambda v: len(v) == 3, within=30, what="three low-stock alerts")
    by_location = {location: event_id for location, event_id in found}
    assert set(by_location) == {None, store, "default"}

    def received(who: str) -> dict[str, list[Hit]]:
        return receiver.by_id(f"/ok/{who}-{sku}")

    async def everyone() -> dict[str, set[str]]:
        return {who: set(received(who)) for who in subs}

    await wait_until(
        everyone,
        lambda got: (
            by_location[store] in got["store"] and all(by_location[None] in ids for ids in got.values())
        ),
        within=30,
        what="the store's alert and the SKU-level one delivered",
    )
    for who, expected in (
        ("store", {by_location[store], by_location[None]}),
        ("elsewhere", {by_location[None]}),
        ("none", {by_location[None]}),
    ):
        listed = {d["event_id"] for d in await deliveries(edge, subs[who])}
        assert listed == expected, who
        assert set(received(who)) == expected, who
        assert all(len(hits) == 1 for hits in received(who).values()), who
    store_hit = received("store")[by_location[store]][0]
    assert json.loads(store_hit.body)["data"]["location"] == store
