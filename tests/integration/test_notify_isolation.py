"""A delivery that can never be sent ends `failed` with the reason in an attempt row, and the other
deliveries of the same round go out; an item name with CR/LF renders on one line and cannot add a header.
Against the real PostgreSQL, a real SMTP server and a real webhook receiver. Rows are written straight to
the tables, as older rows (before the contracts refused control characters) may be."""

from __future__ import annotations

import json
import re
import uuid

import asyncpg
import httpx
import pytest

from db import command_log, notify_repo
from db.engine import make_engine
from infra.settings import Settings
from tests.e2e.notify_support import serving, smtp_server
from tests.integration.helpers import pg_dsn
from workers.notifier.dispatcher import Dispatcher

pytestmark = [pytest.mark.stack, pytest.mark.timeout(60)]


async def subscription(
    db: asyncpg.Connection, sku: str, *, url: str | None = None, recipients: list[str] | None = None
) -> uuid.UUID:
    sub_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO notification_subscriptions (id, name, skus, kind, url, secret, recipients)
        VALUES ($1, 'isolation', $2, $3, $4, $5, $6)
        """,
        sub_id,
        [sku],
        "webhook" if url is not None else "email",
        url,
        "whsec_" + "B" * 44 if url is not None else None,
        recipients or [],
    )
    return sub_id


async def test_an_unsendable_delivery_fails_with_its_reason_and_the_others_go_out(
    stack: Settings, db: asyncpg.Connection
) -> None:
    sku = f"ISO-{uuid.uuid4().hex[:8].upper()}"
    ops = f"ops-{sku.lower()}@example.com"
    evil = f"evil-{sku.lower()}@example.com"
    with smtp_server() as (mailbox, smtp_port):
        async with serving("127.0.0.1") as receiver:
            subs = {
                "email": await subscription(db, sku, recipients=[ops]),
                "bad_recipient": await subscription(
                    db, sku, recipients=[f"x-{sku.lower()}@example.com\r\nBcc: {evil}"]
                ),
                "bad_url": await subscription(db, sku, url="http://[::1/hook"),
                "webhook": await subscription(db, sku, url=receiver.url(f"/ok/{sku}")),
                # The receiver's refusal quotes a NUL, which PostgreSQL text cannot hold.
                "binary": await subscription(db, sku, url=receiver.url(f"/binary/{sku}")),
                # .invalid never resolves (RFC 6761): like DNS being down, which the schedule outlasts.
                "dns": await subscription(db, sku, url=f"http://{sku.lower()}.invalid/hook"),
            }
            event_id = uuid.uuid4()
            payload = json.dumps(
                {"event_id": str(event_id), "sku": sku, "type": "low_stock_detected", "available": 1}
            )
            name = f"Lamp\r\nBcc: {evil}\r\n\r\nInjected body"
            engine = make_engine(stack.database_url)
            settings = stack.model_copy(
                update={
                    "webhook_allowlist": ["127.0.0.1"],
                    "smtp_host": "127.0.0.1",
                    "smtp_port": smtp_port,
                    "smtp_starttls": False,
                    "smtp_username": None,
                }
            )
            try:
                async with command_log.transaction(engine) as tx:
                    await notify_repo.insert_deliveries(
                        tx,
                        [
                            notify_repo.NewDelivery(event_id, sub, "low_stock_detected", sku, name, payload)
                            for sub in subs.values()
                        ],
                    )
                async with httpx.AsyncClient(follow_redirects=False) as http:
                    dispatcher = Dispatcher(engine, pg_dsn(stack), settings, http)
                    for _ in range(20):  # rounds until nothing is due (another test's may be due too)
                        if await dispatcher.round() == 0:
                            break
            finally:
                await engine.dispose()
            rows = await db.fetch(
                """
                SELECT d.subscription_id, d.status, d.last_error, count(a.id) AS attempts,
                       max(a.error) AS attempt_error, max(a.outcome) AS outcome
                FROM notification_deliveries d LEFT JOIN notification_attempts a ON a.delivery_id = d.id
                WHERE d.sku = $1 GROUP BY d.id, d.event_at
                """,
                sku,
            )
            state = {r["subscription_id"]: r for r in rows}
            for kind in ("bad_recipient", "bad_url"):
                row = state[subs[kind]]
                assert (row["status"], row["attempts"], row["outcome"]) == ("failed", 1, "failed"), kind
                assert row["attempt_error"].startswith("cannot be sent: "), row["attempt_error"]
                assert row["last_error"] == row["attempt_error"]
            assert "ValueError" in state[subs["bad_recipient"]]["attempt_error"]
            assert (state[subs["email"]]["status"], state[subs["webhook"]]["status"]) == (
                "delivered",
                "delivered",
            )
            assert len(receiver.of(f"/ok/{sku}")) == 1
            binary = state[subs["binary"]]
            assert (binary["status"], binary["attempts"], binary["outcome"]) == ("failed", 1, "failed")
            assert binary["attempt_error"] == "HTTP 400: refused\\x00\ufffd here"
            dns = state[subs["dns"]]
            assert (dns["status"], dns["attempts"], dns["outcome"]) == ("pending", 1, "retry")
            assert dns["attempt_error"].startswith("cannot resolve")
        [message] = mailbox.to(ops)
        # Unfolded (RFC 5322 folds a long header before a space): one line, the name's breaks now spaces.
        subject = re.sub(r"\r?\n(?=[ \t])", "", str(message["Subject"]))
        assert "\n" not in subject
        assert f"(Lamp Bcc: {evil} Injected body)" in subject
        assert message["Bcc"] is None
        assert mailbox.to(evil) == []
        assert all(evil not in str(m["To"]) for m in mailbox.messages)
    await db.execute("DELETE FROM notification_subscriptions WHERE id = ANY($1::uuid[])", list(subs.values()))
