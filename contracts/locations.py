"""Stock locations: warehouses, stores and virtual places (in transit, returns) where stock is kept."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.common import LocationCode, PlainText
from contracts.stock_events import AlertState

LocationKind = Literal["warehouse", "store", "virtual"]

_NAME = Field(min_length=1, max_length=200, description="Display name, no markup.", examples=["Berlin DC"])
_KIND = Field(description="What kind of place holds the stock.", examples=["warehouse"])


class Location(BaseModel):
    """A place that holds stock."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "WH-EU-1",
                    "name": "Berlin DC",
                    "kind": "warehouse",
                    "is_active": True,
                    "created_at": "2026-12-07T09:30:00Z",
                }
            ]
        },
    )

    code: LocationCode
    name: str = Field(description="Display name.")
    kind: LocationKind = _KIND
    is_active: bool = Field(
        description="An inactive location receives no stock (receipts, adjustments, counts, reservations,"
        " transfers to it, levels); its stock stays, can be transferred out, and its reservations closed."
    )
    created_at: datetime


class CreateLocation(BaseModel):
    """A new location (admin)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"code": "WH-EU-1", "name": "Berlin DC", "kind": "warehouse"}]},
    )

    code: LocationCode
    name: PlainText = _NAME
    kind: LocationKind = _KIND


class UpdateLocation(BaseModel):
    """Fields to change; omitted fields keep their value. The default location cannot be deactivated."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_extra={"examples": [{"is_active": False}]}
    )

    name: PlainText | None = Field(None, min_length=1, max_length=200, description="Display name, no markup.")
    kind: LocationKind | None = None
    is_active: bool | None = Field(None, description="False: the location receives no more stock.")

    @model_validator(mode="after")
    def _something_changes(self) -> UpdateLocation:
        changed = {name for name in self.model_fields_set if getattr(self, name) is not None}
        if not changed:
            raise ValueError("give at least one of name, kind, is_active")
        return self


class LocationStockView(BaseModel):
    """An item's stock at one location, with the levels in effect there."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "location": "WH-EU-1",
                    "on_hand": 40,
                    "reserved": 5,
                    "available": 35,
                    "alert_state": "ok",
                    "min_stock_level": 10,
                    "max_stock_level": None,
                    "own_levels": False,
                }
            ]
        }
    )

    location: str = Field(description="The location's code.", examples=["WH-EU-1"])
    on_hand: int = Field(description="Units physically at the location.")
    reserved: int = Field(description="Units reserved there for orders.")
    available: int = Field(description="on_hand - reserved: what may still be reserved or moved out.")
    alert_state: AlertState = Field(
        description="The per-location alert on `available` against the levels below."
    )
    min_stock_level: int = Field(description="The level in effect: the location's own, else the item's.")
    max_stock_level: int | None = Field(
        description="The level in effect: the location's own, else the item's; null: no maximum."
    )
    own_levels: bool = Field(
        description="Whether the location sets a level of its own (set_location_levels); false: both "
        "follow the item's."
    )
