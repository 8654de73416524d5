"""The FastAPI app: assembles middleware, error handlers, the API routes, the search page and offline docs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from pipeline.core.limits import Limits
from pipeline.version import __version__

from .errors import install_error_handlers
from .guards import PixelBudget
from .middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from .reloader import IndexReloader, warm_up
from .routes import router
from .schemas import search_body

if TYPE_CHECKING:
    from pipeline.retriever import Retriever

__all__ = ["create_app", "static_dir", "warm_up"]

logger = logging.getLogger(__name__)

# The page sets its own policy: everything from this origin, blob: for the preview of a dropped file.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(retriever: Retriever, *, limits: Limits | None = None, reload_every: float | None = None) -> FastAPI:
    """Build the HTTP app around one loaded Retriever.

    Args:
        retriever: the loaded index; shared by every request (see :class:`IndexReloader`).
        limits: request bounds; default the retriever's own ``limits``.
        reload_every: while the app runs, check this often (seconds) for a new version of the index
            published by ``relspace add``/``remove``/``reanchor`` and swap it in; None never reloads.

    Returns:
        A FastAPI app: ``POST /search``, ``GET /items/{id}``, ``GET /items/{id}/image``, ``GET /health``,
        ``GET /info``, the search page at ``/`` and OpenAPI docs at ``/docs``.
    """

    reloader = IndexReloader(retriever, limits)
    page_dir = static_dir()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if reload_every:
            reloader.watch(reload_every)
        try:
            yield
        finally:
            reloader.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="relspace",
        version=__version__,
        description="Cross-modal text-image search through relative representations.",
        docs_url=None,  # served below from the swagger-ui-bundle package: the default loads from a CDN
    )
    app.state.reloader = reloader  # read by the routes' dependencies
    app.state.pixels = PixelBudget(reloader.limits.max_inflight_pixels, reloader.limits.pixel_wait_ms / 1000)
    app.add_middleware(BodyLimitMiddleware, max_bytes=reloader.limits.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    install_error_handlers(app)
    app.include_router(router)
    app.openapi = lambda: _openapi(app, reloader)  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(
            page_dir / "index.html",
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_CSP},
        )

    app.mount("/static", StaticFiles(directory=page_dir), name="static")
    _mount_docs(app)
    return app


def _openapi(app: FastAPI, reloader: IndexReloader) -> dict[str, Any]:
    """FastAPI's document, with the /search body stating this index's languages and these limits (cached)."""
    if app.openapi_schema is None:
        r = reloader.retriever
        body = search_body(reloader.limits, r.languages, r.caption_languages)
        doc = FastAPI.openapi(app)
        doc["paths"]["/search"]["post"]["requestBody"] = body
        doc["paths"]["/search"]["post"]["responses"]["200"]["links"] = _hit_links(doc)
    return app.openapi_schema


def _hit_links(doc: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI links from a search's first hit to its item and its thumbnail: a client learns that a hit's id is
    an item key, and Schemathesis's stateful phase follows them (search, then the items it found)."""
    def link(path: str, what: str) -> dict[str, Any]:
        return {"operationId": doc["paths"][path]["get"]["operationId"], "description": f"the first hit's {what}",
                "parameters": {"path.item_id": "$response.body#/hits/0/id"}}

    return {"HitItem": link("/items/{item_id}", "item"), "HitThumbnail": link("/items/{item_id}/image", "thumbnail")}


def static_dir() -> Path:
    """The page's files, found through importlib.resources so they come from the installed package."""
    root = resources.files(__package__).joinpath("static")
    if not isinstance(root, Path) or not root.joinpath("index.html").is_file():
        raise RuntimeError(f"the search page files are missing from {root}; reinstall relspace")
    return root


def _mount_docs(app: FastAPI) -> None:
    """OpenAPI docs at ``/docs`` with Swagger UI from the ``swagger-ui-bundle`` package, so they work offline."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="relspace API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon-32x32.png",
        )
