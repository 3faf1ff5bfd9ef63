"""Stock locations: warehouses, stores and virtual places (in transit, returns) where stock is kept."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.common import LocationCode, PlainText

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
