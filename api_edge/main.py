"""Entry module of the HTTP edge."""

from __future__ import annotations

import uvicorn

from api_edge.app import create_edge
from api_edge.http_protocol import JoinedWritesProtocol
from infra.logging import configure_logging
from infra.settings import get_settings, refuse_unsafe_settings


def main() -> None:
    settings = get_settings()
    refuse_unsafe_settings(settings)
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
        # X-Forwarded-For names the client only when a configured proxy sent it; uvicorn's default
        # believed any local peer, so anyone behind a local proxy could pick a fresh rate-limit bucket.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies,
    )


if __name__ == "__main__":
    main()
