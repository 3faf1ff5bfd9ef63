"""Notification admin API: subscriptions (email or signed webhooks), their deliveries and attempts,
secret rotation and replays. Admin only; webhook URLs pass the SSRF guard at registration."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api_edge import audit
from api_edge.auth import require
from api_edge.problems import Problem
from api_edge.requests import BIGINT_MAX
from api_edge.state import Clients, clients
from contracts.notifications import (
    DeliveryView,
    EmailChannel,
    Replayed,
    ReplaySince,
    SecretRotate,
    SecretRotated,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionUpdate,
    SubscriptionView,
    new_webhook_secret,
)
from db import command_log, notify_admin
from infra.ssrf import Refused, parse_allowlist, resolve

router = APIRouter(
    prefix="/v1/notifications", tags=["notifications"], dependencies=[Depends(require("admin"))]
)
ClientsDep = Annotated[Clients, Depends(clients)]
SubscriptionId = Annotated[UUID, Path(description="The subscription's id.")]
DeliveryId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The delivery's id.")]


def _not_found(what: str) -> Problem:
    return Problem(404, "Not Found", f"no such {what}", type_="/problems/not-found")


async def _check_url(c: Clients, url: str) -> None:
    try:
        await resolve(url, parse_allowlist(c.settings.webhook_allowlist))
    except Refused as refused:
        raise Problem(
            422, "Webhook URL refused", str(refused), type_="/problems/webhook-url-refused"
        ) from refused


def _view(row: asyncpg.Record) -> SubscriptionView:
    return SubscriptionView(**dict(row))


def _described(row: asyncpg.Record) -> dict[str, Any]:
    """What the audit trail keeps of a subscription: where it sends and what, never its secret."""
    kept = ("name", "kind", "recipients", "event_types", "skus", "categories", "locations")
    return {**{key: row[key] for key in kept}, "url": _origin(row["url"])}


def _origin(url: str | None) -> str | None:
    """A webhook URL's scheme, host and port: its path or query may carry a token (as Slack's do)."""
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _delivery(row: asyncpg.Record) -> DeliveryView:
    values: dict[str, Any] = dict(row)
    values["attempt_log"] = json.loads(values["attempt_log"])
    return DeliveryView(**values)


@router.post("/subscriptions", status_code=201)
async def create_subscription(
    body: SubscriptionCreate, c: ClientsDep, request: Request
) -> SubscriptionCreated:
    """Subscribe an email list or a webhook to events. A generated webhook secret is shown only here."""
    generated = None
    if isinstance(body.channel, EmailChannel):
        channel: dict[str, Any] = {"kind": "email", "recipients": list(body.channel.recipients), "url": None}
        secret = None
    else:
        url = str(body.channel.url)
        await _check_url(c, url)
        secret = body.channel.secret or new_webhook_secret()
        generated = None if body.channel.secret else secret
        channel = {"kind": "webhook", "recipients": [], "url": url}
    values = {**body.model_dump(exclude={"channel"}), **channel, "secret": secret}
    async with command_log.transaction(c.engine) as pg:
        row = await notify_admin.create_subscription(pg, values)
        await audit.record_pg(
            pg, request, "subscription.create", f"subscription:{row['id']}", **_described(row)
        )
    return SubscriptionCreated(**dict(row), secret=generated)


@router.get("/subscriptions")
async def list_subscriptions(c: ClientsDep) -> list[SubscriptionView]:
    """Every subscription, oldest first. Secrets are never listed."""
    async with command_log.transaction(c.engine) as pg:
        return [_view(r) for r in await notify_admin.subscriptions(pg)]


@router.get("/subscriptions/{subscription_id}")
async def get_subscription(subscription_id: SubscriptionId, c: ClientsDep) -> SubscriptionView:
    async with command_log.transaction(c.engine) as pg:
        row = await notify_admin.subscription(pg, subscription_id)
    if row is None:
        raise _not_found("subscription")
    return _view(row)


@router.patch("/subscriptions/{subscription_id}")
async def update_subscription(
    subscription_id: SubscriptionId, body: SubscriptionUpdate, c: ClientsDep, request: Request
) -> SubscriptionView:
    """Change filters, recipients, URL or `enabled`. Re-enabling clears the failure record."""
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes and changes["url"] is not None:
        changes["url"] = str(changes["url"])
        await _check_url(c, changes["url"])
    changes = {k: v for k, v in changes.items() if v is not None}
    async with command_log.transaction(c.engine) as pg:
        current = await notify_admin.subscription(pg, subscription_id)
        if current is None:
            raise _not_found("subscription")
        wrong = {"url"} if current["kind"] == "email" else {"recipients"}
        if wrong & changes.keys():
            raise Problem(422, "Not this channel", f"a {current['kind']} subscription has no {wrong.pop()}")
        row = await notify_admin.update_subscription(pg, subscription_id, changes) if changes else current
        if changes and row is not None:
            await audit.record_pg(
                pg,
                request,
                "subscription.update",
                f"subscription:{subscription_id}",
                changes={**changes, **({"url": _origin(changes["url"])} if "url" in changes else {})},
            )
    if row is None:
        raise _not_found("subscription")
    return _view(row)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: SubscriptionId, c: ClientsDep, request: Request) -> Response:
    """Delete a subscription with its deliveries and their attempts."""
    async with command_log.transaction(c.engine) as pg:
        current = await notify_admin.subscription(pg, subscription_id)
        if current is None or not await notify_admin.delete_subscription(pg, subscription_id):
            raise _not_found("subscription")
        await audit.record_pg(
            pg, request, "subscription.delete", f"subscription:{subscription_id}", **_described(current)
        )
    return Response(status_code=204)


@router.post("/subscriptions/{subscription_id}/rotate-secret")
async def rotate_secret(
    subscription_id: SubscriptionId, body: SecretRotate, c: ClientsDep, request: Request
) -> SecretRotated:
    """Give a webhook a new secret. The old one keeps signing (a second signature in the header) until
    `previous_secret_valid_until`, so receivers can switch without losing a delivery."""
    secret = body.secret or new_webhook_secret()
    async with command_log.transaction(c.engine) as pg:
        row = await notify_admin.rotate_secret(
            pg, subscription_id, secret, c.settings.webhook_secret_overlap_s
        )
        if row is not None:
            await audit.record_pg(
                pg,
                request,
                "subscription.rotate_secret",
                f"subscription:{subscription_id}",
                secret_given=body.secret is not None,  # whether the admin chose it; never the secret
            )
    if row is None:
        raise _not_found("webhook subscription")
    return SecretRotated(secret=secret, previous_secret_valid_until=row["previous_secret_valid_until"])


@router.get("/subscriptions/{subscription_id}/deliveries")
async def list_deliveries(
    subscription_id: SubscriptionId,
    c: ClientsDep,
    status: Literal["pending", "delivered", "failed"] | None = None,
    before_id: Annotated[
        int | None, Query(ge=1, le=BIGINT_MAX, description="Page: deliveries older than this id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryView]:
    """Newest first, each with every attempt (time, status code, latency, error)."""
    async with command_log.transaction(c.engine) as pg:
        if await notify_admin.subscription(pg, subscription_id) is None:
            raise _not_found("subscription")
        rows = await notify_admin.deliveries(
            pg, subscription_id, status=status, before_id=before_id, limit=limit
        )
    return [_delivery(r) for r in rows]


@router.post("/subscriptions/{subscription_id}/replay")
async def replay_failed(
    subscription_id: SubscriptionId, body: ReplaySince, c: ClientsDep, request: Request
) -> Replayed:
    """Send every failed delivery created since `since` again, from the start of the schedule."""
    async with command_log.transaction(c.engine) as pg:
        if await notify_admin.subscription(pg, subscription_id) is None:
            raise _not_found("subscription")
        count = await notify_admin.replay_failed_since(pg, subscription_id, body.since)
        await audit.record_pg(
            pg,
            request,
            "subscription.replay",
            f"subscription:{subscription_id}",
            since=body.since.isoformat(),
            replayed=count,
        )
    return Replayed(replayed=count)


@router.get("/deliveries/{delivery_id}")
async def get_delivery(delivery_id: DeliveryId, c: ClientsDep) -> DeliveryView:
    async with command_log.transaction(c.engine) as pg:
        row = await notify_admin.delivery(pg, delivery_id)
    if row is None:
        raise _not_found("delivery")
    return _delivery(row)


@router.post("/deliveries/{delivery_id}/replay")
async def replay_delivery(delivery_id: DeliveryId, c: ClientsDep, request: Request) -> DeliveryView:
    """Send one delivery again now (same webhook-id / Message-ID, so receivers can deduplicate)."""
    async with command_log.transaction(c.engine) as pg:
        if not await notify_admin.replay(pg, delivery_id):
            raise _not_found("delivery")
        await audit.record_pg(pg, request, "delivery.replay", f"delivery:{delivery_id}")
        row = await notify_admin.delivery(pg, delivery_id)
    if row is None:
        raise _not_found("delivery")
    return _delivery(row)
