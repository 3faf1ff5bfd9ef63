"""The email sender against a real SMTP server (aiosmtpd) over STARTTLS, with a throwaway CA (trustme) made
in the test: mail arrives encrypted and authenticated when the server's certificate is signed by the CA in
INVMON_SMTP_CA_FILE; a certificate that fails verification, or a server that does not offer STARTTLS, is a
recorded temporary failure and nothing (neither the password nor the mail) is ever sent in clear text.

The failure cases use a server that would happily take AUTH and mail in clear text, so a fallback to
plaintext would show up in the mailbox and in what the server saw."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from infra.settings import Settings
from tests.e2e.notify_support import Mailbox, free_port
from workers.notifier.policy import Verdict, classify_smtp
from workers.notifier.render import Email
from workers.notifier.senders import Sent, build_message, send_email

# The failure cases deliberately offer AUTH without TLS (to catch a plaintext fallback); aiosmtpd warns.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

USER, PASSWORD = "notifier", "smtp-password-0123"


@dataclass
class Wire(Mailbox):
    """A mailbox that also notes, for each AUTH and MAIL command the server saw, whether the session was
    encrypted at that moment."""

    auth_tls: list[bool] = field(default_factory=list)
    mail_tls: list[bool] = field(default_factory=list)

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        self.auth_tls.append(session.ssl is not None)
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=ok, handled=False)  # aiosmtpd then answers 235 or 535 itself

    async def handle_MAIL(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        self.mail_tls.append(session.ssl is not None)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"


@dataclass(frozen=True)
class Pki:
    ca_file: Path  # the CA the notifier is told to trust
    good: ssl.SSLContext  # server context: certificate for 127.0.0.1/localhost signed by that CA
    other_ca: ssl.SSLContext  # certificate for 127.0.0.1/localhost signed by an unrelated CA
    wrong_name: ssl.SSLContext  # signed by the trusted CA, but for another host name


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca, stranger = trustme.CA(), trustme.CA()
    ca_file = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(
        ca_file=ca_file,
        good=server_context(ca, "127.0.0.1", "localhost"),
        other_ca=server_context(stranger, "127.0.0.1", "localhost"),
        wrong_name=server_context(ca, "mail.example.com"),
    )


@contextmanager
def smtp_server(tls_context: ssl.SSLContext | None, *, strict: bool) -> Iterator[tuple[Wire, int]]:
    """strict: STARTTLS and AUTH required, AUTH only after STARTTLS (what a real relay does). Not strict:
    STARTTLS offered if there is a context, but AUTH and mail are also taken in clear text."""
    wire = Wire()
    controller = Controller(
        wire,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=tls_context,
        require_starttls=strict,
        authenticator=wire.authenticator,
        auth_required=True,
        auth_require_tls=strict,
    )
    controller.start()
    try:
        yield wire, controller.port
    finally:
        controller.stop()


async def send(settings: Settings, port: int, **update: Any) -> Sent:
    config = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_starttls": True,
            "smtp_username": USER,
            "smtp_password": SecretStr(PASSWORD),
            "smtp_timeout_s": 10,
            **update,
        }
    )
    message = build_message(Email("subject", "text", "<p>html</p>"), ["a@example.com"], "<m@x>", config)
    return await send_email(message, config)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_mail_arrives_over_starttls_with_auth(settings: Settings, pki: Pki, host: str) -> None:
    """The certificate is verified against INVMON_SMTP_CA_FILE by IP address and by DNS name."""
    with smtp_server(pki.good, strict=True) as (wire, port):
        sent = await send(settings, port, smtp_host=host, smtp_ca_file=pki.ca_file)
    assert classify_smtp(sent.code) is Verdict.DELIVERED, sent
    assert [m["Subject"] for m in wire.messages] == ["subject"]
    assert wire.auth_tls == [True]
    assert wire.mail_tls == [True]


@pytest.mark.parametrize(
    ("server_cert", "ca_file"),
    [
        pytest.param("other_ca", True, id="signed-by-another-ca"),
        pytest.param("wrong_name", True, id="trusted-ca-wrong-host-name"),
        pytest.param("good", False, id="test-ca-not-in-system-trust-store"),
    ],
)
async def test_unverifiable_certificate_is_a_temporary_failure_and_nothing_is_sent(
    settings: Settings, pki: Pki, server_cert: str, ca_file: bool
) -> None:
    """Temporary (retried), as an MTA defers mail it cannot send securely: see send_email. The last case
    shows that without the setting the system trust store applies: verification is never skipped."""
    context: ssl.SSLContext = getattr(pki, server_cert)
    with smtp_server(context, strict=False) as (wire, port):
        sent = await send(settings, port, smtp_ca_file=pki.ca_file if ca_file else None)
    assert sent.code is None, sent
    assert classify_smtp(sent.code) is Verdict.RETRY
    assert sent.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in sent.error
    assert wire.auth_tls == []  # the password never left the client
    assert wire.mail_tls == []
    assert wire.messages == []


async def test_server_without_starttls_is_a_temporary_failure_not_a_plaintext_send(
    settings: Settings, pki: Pki
) -> None:
    """A server (or a man in the middle stripping the capability) that does not offer STARTTLS while the
    setting requires it: retried like a bad certificate, never sent in clear text."""
    with smtp_server(None, strict=False) as (wire, port):
        sent = await send(settings, port, smtp_ca_file=pki.ca_file)
    assert sent.code is None, sent
    assert classify_smtp(sent.code) is Verdict.RETRY
    assert sent.error is not None
    assert "STARTTLS" in sent.error
    assert wire.auth_tls == []
    assert wire.mail_tls == []
    assert wire.messages == []


async def test_missing_ca_file_is_a_recorded_temporary_failure(settings: Settings, tmp_path: Path) -> None:
    """A CA file that is not there (a deploy mistake) fails the attempt with the reason, not the process."""
    with smtp_server(None, strict=False) as (wire, port):
        sent = await send(settings, port, smtp_ca_file=tmp_path / "missing.pem")
    assert sent.code is None, sent
    assert classify_smtp(sent.code) is Verdict.RETRY
    assert sent.error is not None
    assert "INVMON_SMTP_CA_FILE" in sent.error
    assert "missing.pem" in sent.error
    assert wire.messages == []


async def test_a_replaced_ca_file_applies_from_the_next_attempt(
    settings: Settings, pki: Pki, tmp_path: Path
) -> None:
    """The operator's fix for a CA mismatch (deploy the right CA file) needs no restart: the retry sends."""
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))  # the wrong CA first
    with smtp_server(pki.good, strict=True) as (wire, port):
        first = await send(settings, port, smtp_ca_file=ca_file)
        staged = tmp_path / "ca.pem.new"
        staged.write_bytes(pki.ca_file.read_bytes())
        staged.replace(ca_file)  # an atomic swap, as a secret mount or a config tool does it
        second = await send(settings, port, smtp_ca_file=ca_file)
    assert classify_smtp(first.code) is Verdict.RETRY, first
    assert classify_smtp(second.code) is Verdict.DELIVERED, second
    assert len(wire.messages) == 1
