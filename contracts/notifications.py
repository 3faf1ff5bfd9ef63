"""Notification subscriptions, deliveries and the webhook body: the API models of the notifier."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, HttpUrl

from contracts.common import Instant, LocationCode, PlainText, Sku
from contracts.price_events import PriceEvent
from contracts.stock_events import StockEvent


def _event_types() -> frozenset[str]:
    types: set[str] = set()
    for union in (StockEvent, PriceEvent):
        for model in get_args(get_args(union)[0]):
            types.add(str(model.model_fields["type"].default))
    return frozenset(types)


EVENT_TYPES: frozenset[str] = _event_types()
SECRET_PREFIX = "whsec_"


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _known_event_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(f"unknown event type {value!r}; known: {', '.join(sorted(EVENT_TYPES))}")
    return value


def _webhook_secret(value: str) -> str:
    """Standard Webhooks secret: `whsec_` + base64 of 24 to 64 random bytes."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError as error:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from error
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a webhook secret holds 24 to 64 bytes, this one holds {len(key)}")
    return value


EventType = Annotated[str, AfterValidator(_known_event_type), Field(examples=["low_stock_detected"])]
WebhookSecret = Annotated[
    str,
    AfterValidator(_webhook_secret),
    Field(
        description="`whsec_` + base64 of 24-64 random bytes. Omit it and one is generated (shown once).",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    ),
]
_LOCATIONS = (
    "The locations whose per-location stock alerts to send (an alert event with a `location`). Every "
    "other event, the SKU-level alerts on the totals included, ignores this list; empty: no "
    "per-location alerts."
)
Category = Annotated[PlainText, Field(min_length=1, max_length=100, examples=["lighting"])]


class EmailChannel(BaseModel):
    """Send an email to these recipients."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["email"] = "email"
    recipients: list[EmailStr] = Field(min_length=1, max_length=50, examples=[["stock@example.com"]])


class WebhookChannel(BaseModel):
    """POST a signed Standard Webhooks request to this URL."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["webhook"] = "webhook"
    url: HttpUrl = Field(
        description="http(s) URL; refused if it resolves to a loopback, private, link-local, CGNAT or "
        "metadata address (unless the server's allowlist names it). Redirects are not followed.",
        examples=["https://hooks.example.com/invmon"],
    )
    secret: WebhookSecret | None = None


Channel = Annotated[EmailChannel | WebhookChannel, Field(discriminator="kind")]


class SubscriptionCreate(BaseModel):
    """Which events to send where. Empty filters match everything."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "low stock to the warehouse team",
                    "event_types": ["low_stock_detected", "out_of_stock"],
                    "skus": ["ABC-123"],
                    "categories": [],
                    "channel": {"kind": "email", "recipients": ["stock@example.com"]},
                },
                {
                    "name": "low stock in the Berlin warehouse",
                    "event_types": ["low_stock_detected", "out_of_stock"],
                    "locations": ["WH-EU-1"],
                    "channel": {"kind": "webhook", "url": "https://hooks.example.com/invmon"},
                },
            ]
        },
    )
    name: PlainText = Field(min_length=1, max_length=200, description="A label for people.")
    event_types: list[EventType] = Field(
        default_factory=list, max_length=100, description="Event types to send; empty: all."
    )
    skus: list[Sku] = Field(default_factory=list, max_length=1000, description="SKUs; empty: all.")
    categories: list[Category] = Field(
        default_factory=list, max_length=100, description="Item categories; empty: all."
    )
    locations: list[LocationCode] = Field(
        default_factory=list,
        max_length=100,
        description=_LOCATIONS,
    )
    channel: Channel
    enabled: bool = True


class SubscriptionUpdate(BaseModel):
    """Fields to change; absent fields stay. Re-enabling clears the endpoint's failure record."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"enabled": False}, {"skus": ["ABC-123"]}, {"locations": ["WH-EU-1", "STORE-2"]}]
        },
    )
    name: PlainText | None = Field(None, min_length=1, max_length=200)
    event_types: list[EventType] | None = Field(None, max_length=100)
    skus: list[Sku] | None = Field(None, max_length=1000)
    categories: list[Category] | None = Field(None, max_length=100)
    locations: list[LocationCode] | None = Field(None, max_length=100, description=_LOCATIONS)
    recipients: list[EmailStr] | None = Field(None, min_length=1, max_length=50)
    url: HttpUrl | None = None
    enabled: bool | None = None


class SubscriptionView(BaseModel):
    id: UUID
    name: str
    event_types: list[str]
    skus: list[str]
    categories: list[str]
    locations: list[str] = Field(description=_LOCATIONS)
    kind: Literal["email", "webhook"]
    recipients: list[str]
    url: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="Why the notifier disabled it (410, failing for days).")
    failing_since: datetime | None = Field(description="First failure since the last success.")
    secret_rotated_at: datetime | None
    previous_secret_valid_until: datetime | None = Field(
        description="Until then webhooks are signed with both the new and the previous secret."
    )
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionView):
    secret: str | None = Field(description="The webhook secret; shown only now when it was generated.")


class SecretRotate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})
    secret: WebhookSecret | None = None


class SecretRotated(BaseModel):
    secret: str = Field(description="The new secret; shown only now when it was generated.")
    previous_secret_valid_until: datetime


class AttemptView(BaseModel):
    attempted_at: datetime
    status_code: int | None = Field(description="HTTP status or SMTP reply code; null: no answer.")
    latency_ms: float
    error: str | None
    outcome: str


class DeliveryView(BaseModel):
    id: int
    subscription_id: UUID
    event_id: UUID = Field(description="Also the webhook-id header and the email's Message-ID.")
    event_type: str
    sku: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    attempt_log: list[AttemptView]


class ReplaySince(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"since": "2026-11-27T00:00:00Z"}]}
    )
    since: Instant = Field(description="Replay failed deliveries created at or after this instant.")


class Replayed(BaseModel):
    replayed: int


class WebhookPayload(BaseModel):
    """The JSON body of every webhook: the event type, its time and the event itself."""

    type: str
    timestamp: datetime
    data: dict[str, Any]
