"""structlog JSON logging for every process; stdlib loggers (FastStream, uvicorn, aiokafka) too."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

# A name that carries a credential: password, secret, api-key in its spellings, token in its spellings,
# authorization, cookie; also inside longer names (client_secret, X-Refresh-Token), in any case.
_SENSITIVE = re.compile(r"passw(?:or)?d|secret|api[-_]?key|token|authori[sz]ation|cookie", re.IGNORECASE)
# Every `name=value` (query string, form) and `name: value` (a header, a quoted field). A name starts
# after a separator and is matched whole, so the scan stays linear on hostile input (an access line
# quotes any URL); whether it is a credential is decided by `_SENSITIVE` on the name alone.
_IN_QUERY = re.compile(r"(?<![^?&;\s\"',])([\w.-]+)(=)[^&;\s\"',]*")
_IN_HEADER = re.compile(
    r"(?<![^\s\"'{,(])([\w.-]+)([\"']?[ \t]*:[ \t]*[\"']?)(?:(?:bearer|basic|digest)[ \t]+)?[^\s\"',;}]+",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def _sensitive(name: str) -> bool:
    return _SENSITIVE.search(name) is not None


def _blank(match: re.Match[str]) -> str:
    name, separator = match[1], match[2]
    return f"{name}{separator}{REDACTED}" if _sensitive(name) else match[0]


def redact_url(text: str) -> str:
    """A URL, header or line quoting them, without the values of credential-like parameters and headers."""
    if "=" in text:
        text = _IN_QUERY.sub(_blank, text)
    if ":" in text:
        text = _IN_HEADER.sub(_blank, text)
    return text


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):  # e.g. a headers mapping logged as a field
        return {
            k: REDACTED if isinstance(k, str) and _sensitive(k) else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):  # e.g. ASGI header pairs
        if len(value) == 2 and isinstance(value[0], str | bytes) and not isinstance(value[1], dict):
            name = value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
            if _sensitive(name):
                return (value[0], REDACTED)
        redacted = [_redact_value(v) for v in value]
        return tuple(redacted) if isinstance(value, tuple) else redacted
    return value


def _redact(_: object, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """No credential reaches a log line: a field named like one is blanked, and text (the event, access
    lines quoting a URL with ?token=, a logged header) loses the values of credential-like names."""
    for key, value in event_dict.items():
        if _sensitive(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(value)
    return event_dict


_SHARED: list[structlog.types.Processor] = [
    _redact,
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.add_logger_name,
]


def configure_logging(process: str, level: str = "INFO", *, json: bool | None = True) -> None:
    """Configure once per process, from its entry module. Binds `process` to every line. `json=None`:
    JSON unless stdout is a terminal, where a person reads coloured console lines."""
    if json is None:
        json = not sys.stdout.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=True)
    )
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _json_handler[:] = [handler] if json else []
    root.setLevel(level.upper())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(process=process)


# The handler JSON lines go to, once configure_logging chose JSON (empty: console lines, or not configured).
_json_handler: list[logging.StreamHandler[Any]] = []


def hot_path_line(logger: str, event: str, **fields: Any) -> None:
    """One INFO line for a hot path (the edge's access line): the same JSON object a structlog call would
    write (fields, event, the bound context, level, timestamp, logger), built with one orjson.dumps and
    written under the handler's lock. A structlog call costs ~10x as much CPU. Console mode: an ordinary
    structlog call; INFO switched off: nothing at all."""
    hot_path_lines(logger, event, (fields,))


def _text(value: object) -> object:
    return str(value) if isinstance(value, uuid.UUID) else value


def hot_path_lines(logger: str, event: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """`hot_path_line` for many lines of one event (a batch's events): one timestamp, and one write and
    flush for all of them instead of one per line. A UUID value is written as `str()` writes it, by orjson
    (at a third of the cost of `str()`: a worker logs two per event)."""
    if not logging.getLogger(logger).isEnabledFor(logging.INFO):
        # Nothing would be written: a structlog call would still run every processor before its stdlib
        # logger dropped the line (~3 % of the edge's CPU at 1,000 requests/s with INVMON_LOG_LEVEL=WARNING).
        return
    if not _json_handler:
        for fields in rows:
            structlog.get_logger(logger).info(event, **{k: _text(v) for k, v in fields.items()})
        return
    tail = {
        "event": event,
        **structlog.contextvars.get_contextvars(),
        "level": "info",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "logger": logger,
    }
    text = "".join(
        orjson.dumps({**fields, **tail}, option=orjson.OPT_APPEND_NEWLINE).decode() for fields in rows
    )
    if not text:
        return
    handler = _json_handler[0]
    handler.acquire()
    try:
        handler.stream.write(text)
        handler.flush()
    finally:
        handler.release()
