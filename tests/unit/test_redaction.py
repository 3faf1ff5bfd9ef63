"""Log redaction: no credential value reaches a log line, whatever its spelling or where it appears."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator

import pytest
import structlog

from infra.logging import configure_logging, hot_path_lines, redact_url

SECRET = "s3cr3t-VALUE"


@pytest.mark.parametrize(
    "text",
    [
        f"GET /v1/live?token={SECRET}&x=1",
        f"/x?Access_Token={SECRET}",
        f"/x?REFRESH_TOKEN={SECRET}",
        f"/x?a=1&api_key={SECRET}",
        f"/x?API-KEY={SECRET}",
        f"/x?apikey={SECRET}",
        f"/x?X-Api-Key={SECRET}",
        f"/x?password={SECRET}",
        f"/x?Passwd={SECRET}",
        f"/x?client_secret={SECRET}",
        f"/x?authorization={SECRET}",
        f"Authorization: Bearer {SECRET}",
        f"authorization: basic {SECRET}",
        f"X-API-Key: {SECRET}",
        f"Cookie: session={SECRET}",
        f'{{"password": "{SECRET}", "name": "x"}}',
        f"headers={{'authorization': 'Bearer {SECRET}'}}",
    ],
)
def test_credential_values_are_redacted(text: str) -> None:
    redacted = redact_url(text)
    assert SECRET not in redacted, redacted
    assert "[redacted]" in redacted


@pytest.mark.parametrize(
    "text", ["/v1/items/MUG?limit=10&after=x", "the token expired at 10:00", "sku=MUG&author=bob"]
)
def test_other_text_is_kept(text: str) -> None:
    assert redact_url(text) == text


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_log_lines_redact_fields_headers_and_text() -> None:
    stream = io.StringIO()
    configure_logging("test", "INFO", json=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    structlog.get_logger("t").info(
        f"request /x?token={SECRET}",
        Password=SECRET,
        headers={"X-Api-Key": SECRET, "accept": "json"},
        raw=[(b"authorization", f"Bearer {SECRET}".encode()), (b"host", b"h")],
    )
    logging.getLogger("uvicorn").info("GET /y?API_KEY=%s", SECRET)
    out = stream.getvalue()
    assert SECRET not in out, out
    first = json.loads(out.splitlines()[0])
    assert first["Password"] == "[redacted]"
    assert first["headers"] == {"X-Api-Key": "[redacted]", "accept": "json"}


@pytest.mark.parametrize(
    "hostile",
    ["=/x?" + "token" * 20_000 + "!", "x: ?" + "token" * 20_000 + "!", "/x?" + "token=" * 20_000],
)
def test_redaction_is_linear_on_hostile_urls(hostile: str) -> None:
    """The access line quotes any URL a client sends: a backtracking pattern took 1.2 s of the event
    loop on a 64 KB query of repeated `token`."""
    started = time.perf_counter()
    redact_url(hostile)
    assert time.perf_counter() - started < 0.1


@pytest.mark.usefixtures("restore_logging")
def test_hot_path_lines_write_one_json_line_per_row_with_the_bound_context() -> None:
    stream = io.StringIO()
    configure_logging("test", "INFO", json=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    structlog.contextvars.bind_contextvars(batch="b1")
    hot_path_lines("invmon.worker", "event_recorded", ({"command_id": "c1"}, {"command_id": "c2"}))
    hot_path_lines("invmon.worker", "event_recorded", ())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["command_id"] for line in lines] == ["c1", "c2"]
    for line in lines:
        assert line["event"] == "event_recorded"
        assert (line["process"], line["batch"], line["level"], line["logger"]) == (
            "test",
            "b1",
            "info",
            "invmon.worker",
        )
        assert line["timestamp"].endswith("Z")


@pytest.mark.usefixtures("restore_logging")
def test_hot_path_lines_write_uuids_as_str_does() -> None:
    """Workers pass event and command ids as UUIDs (orjson writes them); the text is str()'s, in JSON
    lines and in console lines alike."""
    ids = uuid.uuid4(), uuid.UUID("00000000-0000-5000-8000-00000000000a")
    for json_lines in (True, False):
        stream = io.StringIO()
        configure_logging("test", "INFO", json=json_lines)
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        hot_path_lines("invmon.worker", "event_recorded", ({"command_id": i} for i in ids))
        text = stream.getvalue()
        for i in ids:
            assert str(i) in text
        assert "UUID(" not in text
        if json_lines:
            assert [json.loads(line)["command_id"] for line in text.splitlines()] == [str(i) for i in ids]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("json_lines", [True, False])
def test_hot_path_lines_do_no_work_when_info_is_off(
    monkeypatch: pytest.MonkeyPatch, json_lines: bool
) -> None:
    """At INVMON_LOG_LEVEL=WARNING the access line is dropped before structlog runs its processors."""
    configure_logging("test", "WARNING", json=json_lines)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dropped line went through structlog")

    monkeypatch.setattr(structlog, "get_logger", refuse)
    hot_path_lines("invmon.edge.access", "http_request", ({"status": 202},))
