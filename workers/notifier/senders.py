"""The two channels' I/O: one webhook POST (httpx, no redirects, pinned to the checked address) and one
email (aiosmtplib). Each returns what happened; the policy decides what it means."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiosmtplib
import httpx

from infra.settings import Settings
from infra.ssrf import Target
from workers.notifier.render import Email


@dataclass(frozen=True, slots=True)
class Sent:
    code: int | None  # HTTP status or SMTP reply code; None: no answer
    latency_ms: float
    error: str | None = None
    retry_after: str | None = None


def pinned_url(target: Target) -> str:
    """The URL with its host replaced by the address the SSRF guard approved."""
    parts = urlsplit(target.url)
    host = f"[{target.address}]" if target.address.version == 6 else str(target.address)
    return urlunsplit(parts._replace(netloc=f"{host}:{target.port}"))


async def post_webhook(
    client: httpx.AsyncClient, target: Target, headers: dict[str, str], body: bytes
) -> Sent:
    default_port = 443 if target.url.startswith("https") else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    started = time.perf_counter()
    try:
        response = await client.post(
            pinned_url(target),
            content=body,
            headers={**headers, "host": host_header},
            extensions={"sni_hostname": target.host},
        )
    except httpx.HTTPError as error:
        return Sent(None, (time.perf_counter() - started) * 1000, f"{type(error).__name__}: {error}"[:500])
    latency = (time.perf_counter() - started) * 1000
    problem = None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
    if response.is_redirect:
        where = response.headers.get("location")
        problem = f"HTTP {response.status_code}: redirects are not followed ({where})"
    return Sent(response.status_code, latency, problem, response.headers.get("retry-after"))


def message_id(event_id: str, subscription_id: str, settings: Settings) -> str:
    """Stable across retries and redeliveries, so a mail client can spot a duplicate."""
    domain = settings.smtp_from.rsplit("@", 1)[-1].strip(" >") or "invmon.local"
    return f"<{event_id}.{subscription_id}@{domain}>"


def build_message(mail: Email, recipients: list[str], msg_id: str, settings: Settings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = mail.subject
    message["Message-ID"] = msg_id
    message["Date"] = formatdate(usegmt=True)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


def smtp_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verifies the certificate chain and the host name. With a CA file, only that file's CAs are trusted
    (like curl's --cacert), so a private relay can be pinned to its own CA; without one, the system trust
    store. A replaced CA file applies from the next attempt, without a restart."""
    try:
        # Cache key: the file's identity and mtime, so a rewrite or an atomic swap (a new inode, as when a
        # mounted secret is updated) loads the new CAs; loading costs milliseconds, too much for every send.
        stat = ca_file.stat() if ca_file is not None else None
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size) if stat is not None else None
        return _tls_context(ca_file, version)
    except OSError as error:  # ssl's message names neither the file nor the setting
        raise OSError(f"INVMON_SMTP_CA_FILE {ca_file}: {error}") from error


@lru_cache(maxsize=4)
def _tls_context(ca_file: Path | None, version: tuple[int, int, int] | None) -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)


async def send_email(message: EmailMessage, settings: Settings) -> Sent:
    """A server without STARTTLS when it is required, or a certificate that fails verification, comes back
    as a failure with no code (aiosmtplib raises before AUTH or MAIL, so nothing goes out in clear text),
    which the policy retries. Temporary on purpose, as an MTA defers mail it cannot send securely (Postfix's
    `secure` level, RFC 7672, RFC 8461): the usual causes (an expired or renewed certificate, a CA file not
    yet updated, a relay misconfigured or STARTTLS stripped on the path) are fixed by an operator, and the
    notification should then go out on the retry schedule rather than be dropped after one attempt."""
    started = time.perf_counter()
    if settings.smtp_username and not settings.smtp_starttls and not settings.smtp_allow_plaintext_auth:
        # The password would cross the network readable. A recorded, retried failure: the mail goes out
        # once an operator turns STARTTLS on (or opts in for a trusted local relay).
        return Sent(
            None,
            _ms(started),
            "refused: SMTP AUTH over a clear-text connection; set INVMON_SMTP_STARTTLS=true "
            "(or INVMON_SMTP_ALLOW_PLAINTEXT_AUTH=true for a trusted local relay)",
        )
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        # Inside the try: an unreadable CA file is a recorded, retried failure, not a crashed dispatcher.
        tls_context = smtp_tls_context(settings.smtp_ca_file) if settings.smtp_starttls else None
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            start_tls=settings.smtp_starttls,
            tls_context=tls_context,
            username=settings.smtp_username,
            password=password,
            timeout=settings.smtp_timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as error:
        # Every recipient refused: the first reply code decides (4xx temporary, 5xx permanent).
        first = error.recipients[0]
        return Sent(first.code, _ms(started), f"SMTP {first.code}: {first.message}"[:500])
    except aiosmtplib.SMTPResponseException as error:
        return Sent(error.code, _ms(started), f"SMTP {error.code}: {error.message}"[:500])
    except (aiosmtplib.SMTPException, OSError) as error:
        return Sent(None, _ms(started), f"{type(error).__name__}: {error}"[:500])
    return Sent(250, _ms(started))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
