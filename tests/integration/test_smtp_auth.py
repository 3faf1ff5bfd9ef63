"""The email sender against a real SMTP server (aiosmtpd) that requires AUTH: the right credentials from
settings are used and the mail arrives; wrong ones get a 5xx reply, which the policy treats as permanent;
no server at all is a temporary failure."""

from __future__ import annotations

from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from infra.settings import Settings
from tests.e2e.notify_support import Mailbox, free_port
from workers.notifier.policy import Verdict, classify_smtp
from workers.notifier.render import Email
from workers.notifier.senders import build_message, send_email

# The plain-text AUTH is deliberate here (no certificate in tests); aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

USER, PASSWORD = "notifier", "smtp-password-0123"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # aiosmtpd then answers 235 or 535 itself


@pytest.mark.parametrize(("password", "verdict"), [(PASSWORD, Verdict.DELIVERED), ("wrong", Verdict.FAILED)])
async def test_smtp_auth_from_settings(settings: Settings, password: str, verdict: Verdict) -> None:
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,  # STARTTLS needs a certificate; AUTH is what this test is about
    )
    controller.start()
    try:
        config = settings.model_copy(
            update={
                "smtp_host": "127.0.0.1",
                "smtp_port": controller.port,
                "smtp_username": USER,
                "smtp_password": SecretStr(password),
                "smtp_allow_plaintext_auth": True,
            }
        )
        message = build_message(Email("subject", "text", "<p>html</p>"), ["a@example.com"], "<m@x>", config)
        sent = await send_email(message, config)
    finally:
        controller.stop()
    assert classify_smtp(sent.code) is verdict, sent
    assert len(mailbox.messages) == (1 if verdict is Verdict.DELIVERED else 0)


async def test_auth_without_starttls_is_refused_before_connecting(settings: Settings) -> None:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), auth_require_tls=False)
    controller.start()
    try:
        config = settings.model_copy(
            update={
                "smtp_host": "127.0.0.1",
                "smtp_port": controller.port,
                "smtp_username": USER,
                "smtp_password": SecretStr(PASSWORD),
            }
        )
        message = build_message(Email("s", "t", "<p>h</p>"), ["a@example.com"], "<m@x>", config)
        sent = await send_email(message, config)
    finally:
        controller.stop()
    assert classify_smtp(sent.code) is Verdict.RETRY, sent
    assert sent.error is not None
    assert "INVMON_SMTP_STARTTLS" in sent.error
    assert mailbox.messages == []


async def test_no_smtp_server_is_a_temporary_failure(settings: Settings) -> None:
    config = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": free_port(), "smtp_timeout_s": 5}
    )
    message = build_message(Email("s", "t", "<p>h</p>"), ["a@example.com"], "<m@x>", config)
    sent = await send_email(message, config)
    assert sent.code is None
    assert classify_smtp(sent.code) is Verdict.RETRY
    assert sent.error is not None
