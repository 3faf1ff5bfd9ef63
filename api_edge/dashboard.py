"""The dashboard: static files and the one setting the page needs. Public on purpose: the files hold no
data; every read goes through the API with the user's bearer token."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import Scope

from infra.settings import Settings

FILES = Path(__file__).parent / "dashboard"
PREFIX = "/dashboard"


def security_headers(settings: Settings) -> dict[str, str]:
    """A CSP that allows only our own files plus the one WebSocket origin; no inline code of any kind."""
    live = urlsplit(settings.live_public_url)
    live_origin = f"{live.scheme}://{live.netloc}"
    csp = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' {live_origin}",
            "base-uri 'none'",
            "form-action 'none'",  # the login form is submitted by script, never navigated
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # Revalidate each load (ETag makes it cheap) so a deploy never mixes old and new modules.
        "Cache-Control": "no-cache",
    }


class DashboardFiles(StaticFiles):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(directory=FILES, html=True)
        self._headers = headers

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(self._headers)
        return response


class DashboardConfig(BaseModel):
    live_url: str = Field(description="WebSocket URL of the live relay (docs/live-protocol.md).")
    api_base: str = Field("", description="Prefix of the HTTP API; empty: the same origin.")


def install(app: FastAPI, settings: Settings) -> None:
    """Routes first, then the static mount, so `config.json` is never looked up on disk."""
    headers = security_headers(settings)
    config = DashboardConfig(live_url=settings.live_public_url).model_dump()

    @app.get(PREFIX, include_in_schema=False)
    async def dashboard_root() -> RedirectResponse:
        # Relative module URLs in index.html resolve against the trailing slash.
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    @app.get(f"{PREFIX}/config.json", include_in_schema=False)
    async def dashboard_config() -> JSONResponse:
        return JSONResponse(config, headers=headers)

    app.mount(PREFIX, DashboardFiles(headers), name="dashboard")
