"""`/docs` (Swagger UI) from assets shopper serves itself.

FastAPI's own docs pages load their scripts from a CDN: without internet they are blank.
The assets come from the `fastapi-offline` package (Swagger UI 5); its app class is not
used, only its files. There is no `/redoc`: ReDoc's bundle loads its vendor's logo from a
CDN whatever it is told, so it would not be offline.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/assets/docs"


def add_offline_docs(app: FastAPI) -> None:
    """Serve the Swagger UI of `app` (made with `docs_url=None, redoc_url=None`) offline."""
    app.mount(ASSETS, StaticFiles(directory=_asset_folder()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect,
            # No badge from the online validator: the page makes no request elsewhere.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def _asset_folder() -> Path:
    return Path(str(files("fastapi_offline") / "static"))
