"""Webhook signatures verify with the independent `standardwebhooks` library, also across a rotation."""

from __future__ import annotations

import base64
import time

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from contracts.notifications import SecretRotate
from workers.notifier import signing

BODY = b'{"type":"low_stock_detected","timestamp":"2026-11-27T12:00:00Z","data":{"sku":"ABC-1"}}'


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers([secret], "2b7c6b0e-8f55-4c09-9a44-000000000001", now, BODY)
    assert Webhook(secret).verify(BODY, headers) is not None


def test_a_five_minute_old_timestamp_is_rejected_by_the_receiver() -> None:
    secret = signing.new_secret()
    old = int(time.time()) - 301
    headers = signing.headers([secret], "msg_1", old, BODY)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, headers)


def test_tampered_body_or_other_secret_fails() -> None:
    secret = signing.new_secret()
    headers = signing.headers([secret], "msg_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"ABC-1", b"ABC-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, headers)


def test_during_rotation_both_the_new_and_the_old_secret_verify() -> None:
    new, old = signing.new_secret(), signing.new_secret()
    headers = signing.headers([new, old], "msg_2", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)


def test_generated_secrets_are_whsec_base64_of_32_bytes() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_" + base64.b64encode(b"x" * 23).decode(),  # too short
        base64.b64encode(b"x" * 32).decode(),  # no prefix
        "whsec_not*base64",
    ],
)
def test_weak_or_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValidationError):
        SecretRotate(secret=secret)
    with pytest.raises(ValueError, match="secret"):
        signing.secret_bytes(secret)
