"""What the dashboard's overview strip and the admins' operations page read: pipeline health at a glance."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class CommandRateBucket(_View):
    start: datetime = Field(description="Start of the bucket (UTC).", examples=["2026-12-07T19:00:10Z"])
    commands: int = Field(ge=0, description="Commands applied or rejected in the bucket.", examples=[212])
    per_second: float = Field(ge=0, description="`commands` divided by the bucket's width.", examples=[21.2])


class Overview(_View):
    """The items page's strip: how many items are in each alert state, and commands/s lately."""

    items_by_alert_state: dict[str, int] = Field(
        description="Active items per stored alert state (ok, low, out, over); states with none are 0.",
        examples=[{"ok": 120, "low": 7, "out": 2, "over": 1}],
    )
    bucket_s: int = Field(description="Width of one rate bucket in seconds.", examples=[10])
    commands: list[CommandRateBucket] = Field(
        description="Commands the workers finished (applied or rejected) per bucket over the last "
        "`window_s` seconds, oldest first, empty buckets included."
    )
    window_s: int = Field(description="How far back `commands` reaches, in seconds.", examples=[600])


class PartitionLag(_View):
    group: str = Field(description="Kafka consumer group.", examples=["stock-worker"])
    topic: str = Field(examples=["invmon.stock.commands.v1"])
    partition: int = Field(ge=0, examples=[0])
    committed: int | None = Field(description="The group's committed offset; null if it never committed.")
    end: int = Field(ge=0, description="The partition's log-end offset.", examples=[18250])
    lag: int = Field(ge=0, description="Records the group has still to read.", examples=[12])


class OutboxBacklog(_View):
    unpublished: int = Field(ge=0, description="Outbox rows not yet published to Kafka.", examples=[3])
    oldest_age_s: float | None = Field(
        description="Age of the oldest unpublished row in seconds; null when there is none.", examples=[0.4]
    )


class FailingDelivery(_View):
    subscription: str = Field(description="The subscription's id.")
    channel: str = Field(examples=["webhook"])
    target: str = Field(
        description="Where it is sent (URL or address).", examples=["https://erp.example/hook"]
    )
    attempts: int = Field(ge=0, examples=[4])
    last_error: str | None = Field(examples=["HTTP 503"])
    next_attempt_at: datetime | None = Field(description="When it is tried again; null if it is not.")
    disabled: bool = Field(description="The endpoint was disabled after too many failures.")


class Operations(_View):
    """The admins' operations page: is anything behind, stuck or failing?"""

    generated_at: datetime = Field(description="When the figures were read (UTC).")
    consumer_lag: list[PartitionLag] = Field(description="Per consumer group and partition.")
    lag_error: str | None = Field(
        None, description="Why consumer lag could not be read (Kafka unreachable); null when it was."
    )
    outbox: OutboxBacklog
    dead_letters_by_reason: dict[str, int] = Field(
        description="Dead-lettered records per reason category.", examples=[{"undecodable": 3, "invalid": 1}]
    )
    failing_deliveries: list[FailingDelivery] = Field(
        description="Notification deliveries that are failing, worst first (at most 50)."
    )
