"""The command ids the edge publishes: random, or derived from what the client sent and who sent it.

Command ids are global (one `processed_commands` row per id), so the edge never publishes an id a client
chose. A client's `command_id` and its Idempotency-Key are mapped through HMAC-SHA256 under a server key,
with the principal: the same principal re-sending the same value gets the same id (a retry is applied
once), while another principal, even one sending the very same value, gets an unrelated id, and nobody
without the key can compute the id another principal's request will get.

The key is derived from `INVMON_JWT_SECRET` (one secret fewer to manage), separated from its use for
tokens by its own label. Rotating that secret changes the ids derived from then on: a retry that spans the
rotation is a new command.

Upstream Kafka producers are not affected: they publish their own ids to the command topics, which only
trusted systems can write to.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import uuid

from infra.settings import Settings

_KEY_LABEL = b"invmon/command-id/v1"
_VERSION_8 = 0x8 << 76  # RFC 9562 UUIDv8: a custom (here: keyed hash) layout
_VARIANT = 0b10 << 62
_KEEP = ~((0xF << 76) | (0b11 << 62)) & ((1 << 128) - 1)


@functools.lru_cache(maxsize=4)
def _derive(secret: str) -> hmac.HMAC:
    """The MAC under the derived key, keyed once: each id copies it (the key schedule is half of an
    HMAC's cost, and a batch derives one id per command)."""
    return hmac.new(hmac.digest(secret.encode(), _KEY_LABEL, "sha256"), digestmod=hashlib.sha256)


def key(settings: Settings) -> hmac.HMAC:
    """The keyed MAC of derived ids (cached per secret, not built per request)."""
    return _derive(settings.jwt_key())


def length_prefixed(first: str, second: str) -> bytes:
    """The pair as one unambiguous byte string: no other pair of texts gives the same bytes."""
    a, b = first.encode("utf-8", "surrogatepass"), second.encode("utf-8", "surrogatepass")
    return b"".join((len(a).to_bytes(4, "big"), a, len(b).to_bytes(4, "big"), b))


def scoped_id(id_key: hmac.HMAC, principal: str, value: str) -> uuid.UUID:
    """The id `principal` gets for `value`. Both are length-prefixed, so no pair of (principal, value)
    spells the same message as another: principals may contain any character."""
    mac = id_key.copy()
    mac.update(length_prefixed(principal, value))
    digest = mac.digest()
    return uuid.UUID(int=(int.from_bytes(digest[:16], "big") & _KEEP) | _VERSION_8 | _VARIANT)


def from_client(id_key: hmac.HMAC, principal: str, client_id: uuid.UUID) -> uuid.UUID:
    """The published id of a `command_id` a client sent (canonical text, so any spelling of one UUID
    gives the same id)."""
    return scoped_id(id_key, principal, f"cmd:{client_id}")


def from_idempotency_key(id_key: hmac.HMAC, principal: str, idempotency_key: str) -> uuid.UUID:
    return scoped_id(id_key, principal, f"idem:{idempotency_key}")
