"""structlog JSON logging for every process; stdlib loggers (FastStream, uvicorn, aiokafka) too."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

_SECRET_IN_URL = re.compile(r"((?:token|api_key|access_token)=)[^&\s\"']+")


def redact_url(text: str) -> str:
    """A URL (or a line quoting one) without the values of token-like query parameters."""
    return _SECRET_IN_URL.sub(r"\1[redacted]", text) if "=" in text else text


def _redact(_: object, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """Access lines quote the URL; a token in a query string (WebSocket ?token=) must not reach the log."""
    event = event_dict.get("event")
    if isinstance(event, str):
        event_dict["event"] = redact_url(event)
    return event_dict


_SHARED: list[structlog.types.Processor] = [
    _redact,
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.add_logger_name,
]


def configure_logging(process: str, level: str = "INFO", *, json: bool = True) -> None:
    """Configure once per process, from its entry module. Binds `process` to every line."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
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
    written under the handler's lock. A structlog call costs ~10x as much CPU. Console mode or an INFO
    level switched off: an ordinary structlog call."""
    if not _json_handler or not logging.getLogger(logger).isEnabledFor(logging.INFO):
        structlog.get_logger(logger).info(event, **fields)
        return
    handler = _json_handler[0]
    line = orjson.dumps(
        {
            **fields,
            "event": event,
            **structlog.contextvars.get_contextvars(),
            "level": "info",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "logger": logger,
        },
        option=orjson.OPT_APPEND_NEWLINE,
    ).decode()
    handler.acquire()
    try:
        handler.stream.write(line)
        handler.flush()
    finally:
        handler.release()
