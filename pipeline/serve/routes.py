"""The HTTP endpoints: search by text or image, item metadata and thumbnails, health and index info."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from PIL import Image
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pipeline.core.limits import Limits
from pipeline.data.images import ImageLoadError, load_image, measure_image
from pipeline.query import Query, QueryError
from pipeline.retriever import Hit, Retriever

from .errors import ApiError, describe, image_error
from .guards import PixelBudget, check_json_depth
from .public_info import counts, public_info
from .reloader import IndexReloader
from .schemas import SEARCH_BODY, SEARCH_ERRORS, ErrorOut, HitOut, ItemOut, QueryOut, SearchRequest, SearchResponse

logger = logging.getLogger(__name__)

# An item's thumbnail changes only if the item is replaced (``add --upsert``); an hour of staleness is accepted.
THUMBNAIL_CACHE = "public, max-age=3600"
# Upload types the browser may declare besides image/*: unknown files arrive as octet-stream.
GENERIC_TYPES = frozenset({"", "application/octet-stream"})
# How an uploaded image is named in errors.
QUERY_IMAGE = "the query image"
# How a form writes k: digits only. Pydantic would also read "+5", " 5", "5.0" and "1_0", which the schema's
# integer does not allow (Schemathesis sent them and got 200).
FORM_INT = re.compile(r"[0-9]+")

router = APIRouter()


# -- dependencies: what create_app put on app.state -------------------------------------------------------


def get_reloader(request: Request) -> IndexReloader:
    return request.app.state.reloader


def get_retriever(request: Request) -> Retriever:
    return request.app.state.reloader.retriever


def get_limits(request: Request) -> Limits:
    return request.app.state.reloader.limits


def get_pixels(request: Request) -> PixelBudget:
    return request.app.state.pixels


ReloaderDep = Annotated[IndexReloader, Depends(get_reloader)]
RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
PixelsDep = Annotated[PixelBudget, Depends(get_pixels)]


# -- reading a search request -----------------------------------------------------------------------------


async def read_query(request: Request, limits: Limits) -> tuple[SearchRequest, bytes | None]:
    """The query fields and the uploaded image bytes, from a JSON or a form body.

    Raises:
        ApiError: 400 bad JSON (or nested past ``limits.max_json_depth``) or empty upload, 413 upload over
            ``limits.max_upload_bytes``, 415 wrong content type, 422 fields of the wrong type or shape.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        raw = await request.body()  # at most the body cap: BodyLimitMiddleware counted it in
        check_json_depth(raw, limits.max_json_depth)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ApiError(400, f"request body is not valid JSON: {e}") from e
        if not isinstance(body, dict):
            raise ApiError(422, "the JSON body must be an object such as {\"text\": \"a red apple\", \"k\": 10}")
        if "image" in body:
            raise ApiError(422, "send an image as multipart/form-data with a file field 'image', not in JSON")
        return _fields(body, strings=False), None
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            415, f"unsupported content type {ctype or '(none)'!r}; send application/json or multipart/form-data"
        )
    # an image part without a filename is a field to Starlette, held in memory up to max_part_size
    form = await request.form(max_files=1, max_fields=8, max_part_size=limits.max_upload_bytes + 1)
    try:
        payload: dict[str, Any] = {}
        upload: UploadFile | str | None = None
        for key, value in form.multi_items():
            if key == "image":
                if upload is not None:
                    raise ApiError(422, "field 'image' is given more than once")
                upload = value
            elif key in payload:
                raise ApiError(422, f"field {key!r} is given more than once")
            elif value != "":  # an empty form field means "not set", as HTML forms send them
                payload[key] = value
        fields = _fields(payload, strings=True)
        if upload is None:
            return fields, None
        if isinstance(upload, str):
            data = _field_bytes(upload)
            if len(data) > limits.max_upload_bytes:
                raise ApiError(413, f"uploaded image exceeds the limit of {limits.max_upload_bytes} bytes")
            if not data:
                raise ApiError(400, "uploaded image is empty")
            return fields, data
        declared = (upload.content_type or "").split(";")[0].strip().lower()
        if not declared.startswith("image/") and declared not in GENERIC_TYPES:
            raise ApiError(415, f"uploaded file has type {declared!r}; send an image (PNG, JPEG, WebP, ...)")
        data = await upload.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise ApiError(413, f"uploaded image exceeds the limit of {limits.max_upload_bytes} bytes")
        if not data:
            raise ApiError(400, "uploaded image is empty")
        return fields, data
    finally:
        await form.close()


def _fields(payload: dict[str, Any], *, strings: bool) -> SearchRequest:
    """Typed fields; form values are all strings, so they are parsed as such (``"5"`` is a k there)."""
    k = payload.get("k")
    if strings and k is not None and not FORM_INT.fullmatch(k):
        raise ApiError(422, f"k: must be written in digits, as an integer between 1 and the limit; got {_short(k)!r}")
    try:
        if strings:
            return SearchRequest.model_validate_strings(payload)
        return SearchRequest.model_validate(payload)
    except ValidationError as e:
        raise ApiError(422, describe(e)) from e


def _field_bytes(value: str) -> bytes:
    """The bytes of a multipart part sent without a filename (Schemathesis sends a binary field so, and the
    schema allows it), which Starlette decoded as UTF-8 if it could, else as Latin-1.

    Exact either way: text that encodes to Latin-1 bytes which are not UTF-8 can only have come from Latin-1.
    """
    try:
        raw = value.encode("latin-1")
        raw.decode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return raw
    return value.encode("utf-8")


def decode_upload(data: bytes, limits: Limits) -> Image.Image:
    """Decode an upload to RGB, checked by the one image rule from the header before any pixel is decoded."""
    try:
        return load_image(data, what=QUERY_IMAGE, max_pixels=limits.max_image_pixels,
                          max_aspect_ratio=limits.max_aspect_ratio)
    except ImageLoadError as e:
        raise image_error(e) from e


def measure_upload(data: bytes, limits: Limits) -> int:
    """The pixels decoding the upload will hold (see :func:`pipeline.data.images.pixel_cost`), or its refusal."""
    try:
        return measure_image(data, what=QUERY_IMAGE, max_pixels=limits.max_image_pixels,
                             max_aspect_ratio=limits.max_aspect_ratio)
    except ImageLoadError as e:
        raise image_error(e) from e


# -- search -----------------------------------------------------------------------------------------------


@router.post(
    "/search",
    response_model=SearchResponse,
    openapi_extra=SEARCH_BODY,
    responses=SEARCH_ERRORS,
    summary="Search by text (JSON) or by image (multipart)",
)
async def search(request: Request, reloader: ReloaderDep, pixels: PixelsDep) -> SearchResponse:
    """Find the k nearest images or captions to a text or an uploaded image.

    JSON: ``{"text": "a red apple", "k": 10, "lang": "en", "target": "image", "result_lang": null}``.
    Multipart: an ``image`` file and optional ``k``, ``target``, ``result_lang`` fields.
    """
    fields, data = await read_query(request, reloader.limits)
    retriever = reloader.retriever  # one version answers the whole request, even if a reload swaps in another
    # Checked before the upload is decoded, so a bad query costs no decode; an image stands in for now.
    query = reloader.check(Query(**fields.model_dump(), image=data), retriever)

    def run() -> tuple[list[Hit], float]:
        t0 = time.perf_counter()
        if data is None:
            return reloader.search(query, retriever), (time.perf_counter() - t0) * 1000.0
        # the decoded image and the encoder's resized copy are held until the search returns
        with pixels.hold(measure_upload(data, reloader.limits)):
            image = decode_upload(data, reloader.limits)  # outside the encoder lock
            hits = reloader.search(replace(query, image=image), retriever)
        return hits, (time.perf_counter() - t0) * 1000.0

    try:
        hits, took_ms = await run_in_threadpool(run)
    except (QueryError, ImageLoadError, ApiError):
        raise
    except ValueError as e:  # the Retriever refusing a query the rules above did not foresee
        raise ApiError(400, str(e)) from e
    logger.debug("search %s -> %s k=%d: %d hits in %.1f ms", query.modality, query.target, query.k, len(hits), took_ms)
    return SearchResponse(
        hits=[
            HitOut(**{**h.to_dict(), "metadata": _jsonable(h.metadata)}, thumbnail=_thumbnail_url(retriever, h.id))
            for h in hits
        ],
        took_ms=round(took_ms, 2),
        query=QueryOut(
            modality=query.modality, target=query.target, k=query.k, lang=query.lang, result_lang=query.result_lang
        ),
        generation=retriever.manifest.generation,
    )


# -- items: ids are keys into the index's tables, never file paths ----------------------------------------
# ``:path`` lets ids that contain "/" (folder datasets) round-trip through the URL; the image route is
# declared first so ".../image" is not read as part of an id.


@router.get(
    "/items/{item_id:path}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "PNG thumbnail"}, 404: {"model": ErrorOut}},
    summary="An item's PNG thumbnail",
)
def item_image(item_id: str, retriever: RetrieverDep) -> Response:
    png = retriever.thumbnail(item_id)
    if png is None:
        known = retriever.item(item_id) is not None
        raise ApiError(404, f"{'no thumbnail for' if known else 'unknown'} item {_short(item_id)!r}")
    return Response(png, media_type="image/png", headers={"Cache-Control": THUMBNAIL_CACHE})


@router.get("/items/{item_id:path}", response_model=ItemOut, responses={404: {"model": ErrorOut}},
            summary="An item's metadata")
def item(item_id: str, retriever: RetrieverDep) -> ItemOut:
    rec = retriever.item(item_id)
    if rec is None:
        raise ApiError(404, f"unknown item {_short(item_id)!r}")
    rec = dict(rec)
    rid, caption = rec.pop("id"), rec.pop("caption", None)
    return ItemOut(id=rid, caption=caption, metadata=_jsonable(rec), thumbnail=_thumbnail_url(retriever, rid))


# -- service ----------------------------------------------------------------------------------------------


@router.get("/health", summary="Liveness: the index is loaded")
def health(retriever: RetrieverDep) -> dict[str, Any]:
    return {"status": "ok", "generation": retriever.manifest.generation, "counts": counts(retriever)}


@router.get("/info", summary="Version, encoders, languages, counts, request limits and attribution")
def info(retriever: RetrieverDep, limits: LimitsDep) -> dict[str, Any]:
    return public_info(retriever, limits)


# -- helpers ----------------------------------------------------------------------------------------------


def _thumbnail_url(retriever: Retriever, item_id: str) -> str | None:
    return f"/items/{quote(item_id, safe='')}/image" if retriever.thumbnail(item_id) is not None else None


def _jsonable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata safe for JSON: binary columns (e.g. embedded images) are left out rather than inlined."""
    out = {}
    for key, value in metadata.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            continue
        out[key] = value if value is None or isinstance(value, (str, int, float, bool, list, dict)) else str(value)
    return out


def _short(value: str, n: int = 80) -> str:
    return value if len(value) <= n else value[: n - 1] + "…"
