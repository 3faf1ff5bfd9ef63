"""Entry module of the HTTP edge."""

from __future__ import annotations

import uvicorn

from api_edge.app import create_edge
from api_edge.http_protocol import JoinedWritesProtocol
from infra.logging import configure_logging
from infra.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("edge", settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_edge(settings),
        host=settings.edge_host,
        port=settings.edge_port,
        log_config=None,
        access_log=False,  # api_edge.health.RequestMetrics writes one access line per request
        server_header=False,  # names no server software to clients (and is one header less per answer)
        http=JoinedWritesProtocol,
        ws="none",  # WebSocket clients are served by the relay process (api_edge/relay/)
    )


if __name__ == "__main__":
    main()
