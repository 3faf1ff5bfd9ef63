"""Frames of the live protocol v1 (docs/live-protocol.md): JSON text, one object per WebSocket frame.

Client frames are validated strictly (unknown fields refused); relay frames are what the relay sends. The
`event` of a `pub` is an event contract (contracts/stock_events.py, contracts/price_events.py), passed on
as the outbox wrote it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter

from contracts.common import LocationCode, PlainText, Sku
from contracts.locations import LocationStockView

Channel = Literal["inventory", "prices", "alerts"]
CHANNELS: tuple[Channel, ...] = ("inventory", "prices", "alerts")
MAX_FILTER_SKUS = 1000
MAX_FILTER_LOCATIONS = 100
COALESCE_MS_MIN, COALESCE_MS_MAX = 50, 60_000
COALESCED = ("inventory", "stock_changed")  # the channel and the one event type coalescing applies to


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Position(_Frame):
    """Where a client stands in a channel: the epoch and the offset of the last publication it applied."""

    epoch: str = Field(min_length=1, max_length=64, examples=["6f1c2a9e4b7d4e0f"])
    offset: StrictInt = Field(ge=0, examples=[1041])


class Filter(_Frame):
    """Only publications (and snapshot rows) of these SKUs, this category and/or these locations. Several:
    all must match."""

    skus: list[Sku] | None = Field(None, max_length=MAX_FILTER_SKUS, examples=[["LAMP-01", "MUG-BLUE"]])
    category: PlainText | None = Field(None, min_length=1, max_length=100, examples=["lighting"])
    locations: list[LocationCode] | None = Field(
        None,
        min_length=1,
        max_length=MAX_FILTER_LOCATIONS,
        description="An event that names a location (`stock_changed`, `reservation_made`, a per-location "
        "alert, `location_levels_set`; a `stock_transferred` by either end) passes only at one of these; "
        "events that name none (item details, prices, SKU-level alerts, rejections) always pass. Inventory "
        "snapshot rows: the items with stock at one of them, `locations` holding only those.",
        examples=[["WH-EU-1", "STORE-PARIS"]],
    )


class Connect(_Frame):
    """The first frame: an access token (any role). Sent within the connect timeout of opening."""

    type: Literal["connect"]
    token: str = Field(min_length=1, max_length=4096)


class Subscribe(_Frame):
    """Follow a channel. With `recover`, the relay sends what was missed since that position, if it can."""

    type: Literal["subscribe"]
    channel: Channel
    filter: Filter | None = None
    recover: Position | None = None
    coalesce_ms: StrictInt | None = Field(
        None,
        ge=COALESCE_MS_MIN,
        le=COALESCE_MS_MAX,
        description="Inventory only: at most one `stock_changed` per SKU every this many ms, the newest "
        "(its state is the item's whole stock). Offsets then only increase, as with a filter.",
        examples=[250],
    )


class Unsubscribe(_Frame):
    type: Literal["unsubscribe"]
    channel: Channel


class Refresh(_Frame):
    """A new access token for the same subject, sent before the current one expires."""

    type: Literal["refresh"]
    token: str = Field(min_length=1, max_length=4096)


class Pong(_Frame):
    type: Literal["pong"]


ClientFrame = Annotated[Connect | Subscribe | Unsubscribe | Refresh | Pong, Field(discriminator="type")]
CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


class Connected(_Frame):
    type: Literal["connected"] = "connected"
    client: str = Field(description="Id of this connection (for logs and support).")
    expires_at: datetime = Field(description="When the token expires (UTC); refresh before then.")
    ping_interval_s: float


class Refreshed(_Frame):
    """The answer to a valid `refresh`: the connection now lasts until the new token expires."""

    type: Literal["refreshed"] = "refreshed"
    expires_at: datetime


class Publication(_Frame):
    """One event at one position of a channel."""

    offset: int
    event: dict[str, Any]


class PriceRow(_Frame):
    """The price of one SKU in one currency as the database holds it; `version` orders `price_*` events."""

    sku: str
    currency: str
    effective_price: Decimal | None
    selling_price: Decimal | None
    discount_price: Decimal | None
    cost_price: Decimal | None
    margin_pct: Decimal | None
    margin_state: str
    version: int


class ItemRow(_Frame):
    """An item as the database holds it; `version` orders the item's inventory events."""

    sku: str
    name: str
    category: str | None
    on_hand: int
    reserved: int
    available: int
    min_stock_level: int
    max_stock_level: int | None
    alert_state: str
    is_active: bool
    version: int
    prices: list[PriceRow] = Field(description="Effective price and margin per currency.")
    locations: list[LocationStockView] = Field(
        description="Stock per location (sorted by code), as the item view has it; with a location filter, "
        "only the filtered locations. on_hand, reserved and available above are the item's totals."
    )


class AlertRow(_Frame):
    """An active alert: a stock level alert (`kind` stock) or a margin under the floor (`kind` margin)."""

    kind: Literal["stock", "margin"]
    sku: str
    state: str = Field(description="stock: low, out or over; margin: below.")
    available: int | None = None
    currency: str | None = None
    margin_pct: Decimal | None = None
    updated_at: datetime = Field(description="When the item or price row last changed.")


class Subscribed(_Frame):
    type: Literal["subscribed"] = "subscribed"
    channel: Channel
    epoch: str
    offset: int = Field(description="The channel position this reply is consistent with.")
    recovered: bool
    publications: list[Publication] = Field(default_factory=list)
    snapshot: list[ItemRow] | list[PriceRow] | list[AlertRow] | None = None
    truncated: bool = Field(False, description="The snapshot hit the relay's row limit.")


class Pub(_Frame):
    type: Literal["pub"] = "pub"
    channel: Channel
    epoch: str
    offset: int
    event: dict[str, Any]


class Reset(_Frame):
    """The relay cannot vouch for continuity of the channel: resubscribe (with `recover`)."""

    type: Literal["reset"] = "reset"
    channel: Channel


class Ping(_Frame):
    type: Literal["ping"] = "ping"


ErrorCode = Literal["bad_frame", "not_subscribed", "unavailable"]


class Error(_Frame):
    """A bad frame that does not end the connection."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
