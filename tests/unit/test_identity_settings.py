"""Production refuses public or missing secrets; local relaxes exactly that; trusted proxies."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from infra.proxies import TrustedProxies
from infra.settings import LOCAL_JWT_SECRET, SAMPLE_JWT_SECRETS, Settings, production_problem

GOOD = "a-real-random-secret-for-this-test-0123456789"
DB = "postgresql+asyncpg://app:{}@db:5432/invmon"


def settings(secret: str | None, environment: str = "production", password: str = "pw-x") -> Settings:
    return Settings(
        environment=environment,
        jwt_secret=SecretStr(secret) if secret is not None else None,
        database_url=DB.format(password),
    )


@pytest.mark.parametrize(
    ("secret", "password", "problem"),
    [
        (None, "pw-x", "is not set"),
        ("", "pw-x", "is not set"),
        ("x" * 31, "pw-x", "shorter than 32 bytes"),
        *[(s, "pw-x", "published sample value") for s in sorted(SAMPLE_JWT_SECRETS)],
        ("my-own-CHANGE-ME-secret-0123456789abcdef", "pw-x", "published sample value"),
        (GOOD, "invmon", "sample password"),
    ],
)
def test_production_refuses(secret: str | None, password: str, problem: str) -> None:
    found = production_problem(settings(secret, password=password))
    assert found is not None
    assert problem in found
    assert "\n" not in found


def test_production_accepts_real_secrets_and_local_accepts_anything() -> None:
    assert production_problem(settings(GOOD)) is None
    assert production_problem(settings(GOOD, password="")) is None  # no password: peer auth, .pgpass
    assert production_problem(settings(None, "local", "invmon")) is None
    assert settings(None, "local").jwt_key() == LOCAL_JWT_SECRET
    with pytest.raises(RuntimeError):
        settings(None).jwt_key()


def test_the_default_is_production() -> None:
    assert Settings.model_fields["environment"].default == "production"
    assert Settings.model_fields["jwt_secret"].default is None


def test_trusted_proxies_are_validated() -> None:
    with pytest.raises(ValidationError):
        Settings(trusted_proxies=["10.0.0.0/33"])


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    none = TrustedProxies([])
    assert none.client("127.0.0.1", ["1.2.3.4"]) == "127.0.0.1"
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    assert proxies.client("192.0.2.1", ["1.2.3.4"]) == "192.0.2.1"  # peer not a proxy
    assert proxies.client("127.0.0.1", ["1.2.3.4"]) == "1.2.3.4"
    # The right-most hop that is not a proxy: what the client wrote further left proves nothing.
    assert proxies.client("127.0.0.1", ["6.6.6.6, 1.2.3.4, 10.1.1.1"]) == "1.2.3.4"
    assert proxies.client("127.0.0.1", ["6.6.6.6", "1.2.3.4"]) == "1.2.3.4"
    assert proxies.client("127.0.0.1", []) == "127.0.0.1"
    assert proxies.client("127.0.0.1", ["10.0.0.2"]) == "10.0.0.2"
