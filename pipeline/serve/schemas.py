"""Request and response models of the HTTP API, and the OpenAPI bodies FastAPI cannot infer from a raw request."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import ERROR_NAMES

# Module level, so FastAPI can resolve them under postponed annotations.


class SearchRequest(BaseModel):
    """The fields of ``POST /search`` (JSON body, or form fields beside an ``image`` file).

    Only the transport types are checked here; every rule of a query (ranges, languages, defaults) is
    :meth:`pipeline.query.Query.validate`, shared with the CLI and the Python API.
    """

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="query text; give this or an image file, not both")
    # strict: JSON true or 2.0 is not a k (the Python API refuses them too); form strings are parsed first
    k: int = Field(10, strict=True, description="number of hits, 1..max_k (see /info limits)")
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
    generation: int = Field(0, description="the index version that answered (its manifest generation)")


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


FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "query image (PNG, JPEG, WebP, ...)"},
        "k": {"type": "integer", "default": 10},
        "target": {"type": "string", "enum": ["image", "text"]},
        "result_lang": {"type": "string"},
    },
}
# /search reads its body itself (JSON or multipart), so its OpenAPI request body is declared by hand.
SEARCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SearchRequest.model_json_schema()},
            "multipart/form-data": {"schema": FORM_SCHEMA},
        },
    }
}
SEARCH_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": name} for code, name in ERROR_NAMES.items() if code in (400, 413, 415, 422)
}
