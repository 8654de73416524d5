"""HTTP errors: every failure leaves the server as ``{"error": name, "detail": text}`` with a fitting status."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.ann.faiss_index import IndexCorruptError
from pipeline.data.images import ImageLoadError, ImageShapeError, ImageTooLargeError
from pipeline.query import QueryError

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)

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


class ApiError(Exception):
    """An error with an HTTP status, rendered as ``{"error": ..., "detail": ...}``."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error body shape, with the short name of ``status``."""
    return JSONResponse(
        {"error": ERROR_NAMES.get(status, f"http_{status}"), "detail": detail}, status_code=status, headers=headers
    )


def describe(exc: ValidationError | RequestValidationError) -> str:
    """Pydantic errors as one readable line: ``k: Input should be a valid integer; ...``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


def image_error(exc: ImageLoadError) -> ApiError:
    """An image that cannot be used: too many pixels is 413 (as too many bytes), a shape beyond the aspect
    bound 422 (a valid image the server will not process), anything else 400."""
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, str(exc))
    if isinstance(exc, ImageShapeError):
        return ApiError(422, str(exc))
    return ApiError(400, f"cannot read the upload as an image: {exc}")


def install_error_handlers(app: FastAPI) -> None:
    """Render every exception an endpoint can raise in the one error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.detail, headers=exc.headers)

    @app.exception_handler(QueryError)  # a query the index or the limits refuse: the client must change it
    async def _query_error(request: Request, exc: QueryError) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(ImageLoadError)
    async def _image_error(request: Request, exc: ImageLoadError) -> JSONResponse:
        err = image_error(exc)
        return error_response(err.status, err.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, exc.detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, describe(exc))

    @app.exception_handler(IndexCorruptError)  # the index on disk is damaged: not the client's fault, nor a bug
    async def _corrupt_index(request: Request, exc: IndexCorruptError) -> JSONResponse:
        logger.error("damaged index on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, f"the index is damaged and cannot answer ({exc}); run relspace verify on it")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error; see the server log")
