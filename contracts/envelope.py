"""The envelope every command and event carries."""

from __future__ import annotations

from typing import Any, ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from contracts.common import Instant, PlainText, Sku


class CommandEnvelope(BaseModel):
    """Fields every command carries. `command_id` makes a command idempotent: it is applied at most once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: StrictInt = Field(1, ge=1, le=1, description="Contract version of this command.")
    command_id: UUID = Field(
        description="Unique id chosen by the sender; a re-sent command reuses it. A producer on the command"
        " topics (a trusted upstream system) chooses it freely. The HTTP edge never publishes a client's id"
        " as is: it publishes a random id, or one derived from the client's id or Idempotency-Key and the"
        " caller with a keyed hash (HMAC-SHA256 under a server secret, UUID version 8), which no producer"
        " can predict."
    )
    sku: Sku
    issued_at: Instant = Field(description="When the sender issued the command (timezone-aware).")
    actor: PlainText = Field(min_length=1, max_length=200, description="Who asked for the change.")
    source: PlainText = Field(min_length=1, max_length=100, description="Which system sent the command.")
    expected_version: StrictInt | None = Field(
        None, ge=0, description="Apply only if the item is at this version (optimistic concurrency)."
    )


class EventEnvelope(BaseModel):
    """Fields every event carries. `event_id` is stable across redelivery so receivers can deduplicate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(1, ge=1, le=1, description="Contract version of this event.")
    event_id: UUID = Field(description="Stable id of this event; the same on every redelivery.")
    sku: Sku
    occurred_at: AwareDatetime = Field(description="When the change was applied (UTC).")
    command_id: UUID | None = Field(None, description="The command that caused this event, if any.")

    channel: ClassVar[str] = "inventory"

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """`model_construct` for values that are already valid (built from validated commands and state),
        at a third of its cost: the defaults come from a per-class template instead of a walk over the
        fields. Every field without a default must be given; an unknown name is refused."""
        defaults, names, required = _template(cls)
        if not (required <= values.keys() <= names):
            raise TypeError(
                f"{cls.__name__}.trusted: missing {set(required - values.keys())},"
                f" unknown {set(values.keys() - names)}"
            )
        event = cls.__new__(cls)
        object.__setattr__(event, "__dict__", {**defaults, **values})  # field order, as model_construct
        object.__setattr__(event, "__pydantic_fields_set__", set(values))
        object.__setattr__(event, "__pydantic_extra__", None)
        object.__setattr__(event, "__pydantic_private__", None)
        return event


_Template = tuple[dict[str, Any], frozenset[str], frozenset[str]]
_TEMPLATES: dict[type[BaseModel], _Template] = {}


def _template(cls: type[BaseModel]) -> _Template:
    """(every field's default in field order, all names, required names) of an event model."""
    if (template := _TEMPLATES.get(cls)) is not None:
        return template
    fields = cls.__pydantic_fields__
    if any(f.default_factory is not None for f in fields.values()) or cls.__pydantic_post_init__:
        raise TypeError(f"{cls.__name__}: a mutable default or post-init needs model_construct")
    required = frozenset(name for name, f in fields.items() if f.is_required())
    defaults = {name: None if name in required else f.default for name, f in fields.items()}
    template = _TEMPLATES[cls] = (defaults, frozenset(fields), required)
    return template
