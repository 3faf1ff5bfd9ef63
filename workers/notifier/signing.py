"""Standard Webhooks signatures (v1): HMAC-SHA256 over `id.timestamp.body`, keyed with the base64 secret
after its `whsec_` prefix. While a rotated-out secret is still valid both signatures are sent, space
separated, so a receiver holding either secret can verify."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from contracts.notifications import new_webhook_secret as new_secret

__all__ = ["headers", "new_secret", "secret_bytes", "sign"]

PREFIX = "whsec_"
MIN_BYTES = 24
MAX_BYTES = 64


def secret_bytes(secret: str) -> bytes:
    """The key of a `whsec_...` secret; ValueError if it is not one or is shorter than 24 bytes."""
    if not secret.startswith(PREFIX):
        raise ValueError(f"a webhook secret starts with {PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except ValueError as error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from error
    if not MIN_BYTES <= len(key) <= MAX_BYTES:
        raise ValueError(f"a webhook secret holds {MIN_BYTES} to {MAX_BYTES} bytes, this one {len(key)}")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_in_force: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per secret in force (newest first)."""
    if not secrets_in_force:
        raise ValueError("a webhook needs at least one secret")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_in_force),
        "content-type": "application/json",
    }
