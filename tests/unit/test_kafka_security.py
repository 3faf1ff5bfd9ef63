"""The Kafka security settings: refused when incomplete, and turned into the same aiokafka arguments for
the plain clients and for FastStream's broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from faststream.kafka.security import parse_security
from faststream.security import SASLPlaintext, SASLScram512
from pydantic import ValidationError

from infra.kafka import broker_security, client_security
from infra.settings import Settings

CA = Path(__file__)  # any file that exists: the settings check paths, not contents


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    plain = settings()
    assert client_security(plain) == {"security_protocol": "PLAINTEXT"}
    assert broker_security(plain) is None


@pytest.mark.parametrize("missing", ["kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"])
def test_sasl_needs_mechanism_username_and_password(missing: str) -> None:
    values = {
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": "app",
        "kafka_sasl_password": "secret",
    }
    del values[missing]
    with pytest.raises(ValidationError, match=f"needs INVMON_{missing.upper()}"):
        settings(**values)


def test_tls_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"INVMON_KAFKA_SSL_CAFILE=.*no such file"):
        settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "absent.pem")


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="CERTFILE and INVMON_KAFKA_SSL_KEYFILE go together"):
        settings(kafka_security_protocol="SSL", kafka_ssl_certfile=CA)


def test_tls_files_without_a_tls_protocol_are_refused() -> None:
    with pytest.raises(ValidationError, match="uses no TLS"):
        settings(kafka_ssl_cafile=CA)


def test_sasl_plaintext_arguments() -> None:
    found = client_security(
        settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="app",
            kafka_sasl_password="secret",
        )
    )
    assert found == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "app",
        "sasl_plain_password": "secret",
    }


def test_the_broker_gets_the_same_arguments_as_the_plain_clients() -> None:
    secured = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="app",
        kafka_sasl_password="secret",
    )
    security = broker_security(secured)
    assert isinstance(security, SASLPlaintext)
    assert security.use_ssl
    plain = client_security(secured)
    through_faststream = parse_security(security)
    assert through_faststream["ssl_context"] is not None
    assert {k: v for k, v in through_faststream.items() if k != "ssl_context"} == {
        k: v for k, v in plain.items() if k != "ssl_context"
    }
    scram = settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="app",
        kafka_sasl_password="secret",
    )
    assert isinstance(broker_security(scram), SASLScram512)
    assert parse_security(broker_security(scram))["security_protocol"] == "SASL_PLAINTEXT"
