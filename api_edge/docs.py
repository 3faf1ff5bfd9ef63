"""`/docs`: Swagger UI served from the swagger-ui-bundle package, so the page works offline and loads
nothing from a CDN (FastAPI's default page pulls its script and styles from jsDelivr)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope
from swagger_ui_bundle import swagger_ui_path

PREFIX = "/docs"
ASSETS = f"{PREFIX}/assets"
INIT = Path(__file__).parent / "docs_ui"

# Only our own origin. Swagger UI styles some elements inline and draws icons as data: URLs; it fetches
# the OpenAPI document and sends "try it out" requests to the same origin.
HEADERS = {
    "Content-Security-Policy": "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>inventory-monitor edge - API docs</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{PREFIX}/init.js"></script>
</body>
</html>
"""


class _Files(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Create the app with `docs_url=None, redoc_url=None`, then call this."""

    @app.get(PREFIX, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(PAGE, headers=HEADERS)

    @app.get(f"{PREFIX}/init.js", include_in_schema=False)
    async def init_js() -> Response:
        body = (INIT / "init.js").read_bytes()
        return Response(body, media_type="text/javascript", headers=HEADERS)

    app.mount(ASSETS, _Files(directory=Path(str(swagger_ui_path))), name="docs-assets")
