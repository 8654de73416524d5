"""Request and response models of the HTTP API, and the OpenAPI bodies FastAPI cannot infer from a raw request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.core.limits import Limits
from pipeline.core.spaces import MODALITIES
from pipeline.query import INVISIBLE

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
    lang: str | None = Field(None, description="language of a caption hit (its best caption's, when grouped)")
    metadata: dict[str, Any] = Field(default_factory=dict, description="other columns of the data source")
    captions: dict[str, str] | None = Field(
        None, description="caption hits: the item's matched captions by language, best first; without result_lang "
        "each item comes once, with every language it matched"
    )
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


def _visible_pattern() -> str:
    """A regex that matches one visible character: any outside :data:`pipeline.query.INVISIBLE`.

    BMP code points are escaped (``\\uXXXX`` reads the same in ECMA and Python regexes, and keeps surrogates
    out of the JSON); the few astral ranges are written as themselves.
    """
    def esc(o: int) -> str:
        return f"\\u{o:04x}" if o <= 0xFFFF else chr(o)

    return "[^" + "".join(esc(lo) if lo == hi else f"{esc(lo)}-{esc(hi)}" for lo, hi in INVISIBLE) + "]"


VISIBLE = _visible_pattern()
OPTIONAL = ("lang", "target", "result_lang")  # the fields of SearchRequest that JSON may send as null
UNSET = {"type": "string", "maxLength": 0}  # an empty form field


def search_body(limits: Limits, languages: Sequence[str] = (), caption_languages: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI request body of ``POST /search`` for one index: every rule of :meth:`Query.validate` a schema
    can state, so that a request the schema allows is one the server answers (Schemathesis checks both ways).

    /search reads its body itself (JSON or multipart), so FastAPI cannot infer it. A body is one of four
    variants: a text or (multipart only) an image query, each without ``result_lang`` or with it and a text
    target (a text query's default target is image, an image query's is text). Empty ``languages`` leave the
    language fields unconstrained: the router's default, before an app knows its index.
    """
    def lang_of(langs: Sequence[str]) -> dict[str, Any]:
        return {"type": "string", "enum": list(langs)} if langs else {"type": "string", "minLength": 1}

    def variant(query: dict[str, Any], result: bool, json: bool) -> dict[str, Any]:
        (name,) = query
        props = {**query, "k": {"type": "integer", "minimum": 1, "maximum": limits.max_k, "default": 10},
                 **({"lang": lang_of(languages)} if name == "text" else {}),
                 "target": {"type": "string", **({"const": "text"} if result else {"enum": list(MODALITIES)})},
                 **({"result_lang": lang_of(caption_languages)} if result else {})}
        required = [name, *(["result_lang"] if result else []), *(["target"] if result and name == "text" else [])]
        if json:  # JSON may send null for an optional string: "not set"
            props = {k: {"anyOf": [v, {"type": "null"}]} if k in OPTIONAL and k not in required else v
                     for k, v in props.items()}
            props.setdefault("result_lang", {"type": "null"})
        else:  # an empty form field is "not set", as HTML forms send them: any field but the image may be empty
            props = {k: v if k in required else {"anyOf": [v, UNSET]} for k, v in props.items()}
            props.update({k: UNSET for k in SearchRequest.model_fields if k not in props})
        return {"type": "object", "additionalProperties": False, "required": required, "properties": props}

    # the length counts the text as sent; the pattern: at least one visible character (pipeline.query.check_text)
    text = {"text": {"type": "string", "minLength": 1, "maxLength": limits.max_text_chars, "pattern": VISIBLE}}
    image = {"image": {"type": "string", "format": "binary", "description": "query image (PNG, JPEG, WebP, ...)"}}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"anyOf": [variant(text, r, json=True) for r in (False, True)]}},
            "multipart/form-data": {"schema": {"anyOf": [variant(q, r, json=False) for q in (text, image)
                                                         for r in (False, True)]}},
        },
    }


# The router's default, before an app knows its index; create_app states the index's own (see app.py).
SEARCH_BODY: dict[str, Any] = {"requestBody": search_body(Limits())}
SEARCH_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": name}
    for code, name in ERROR_NAMES.items() if code in (400, 413, 415, 422, 503)
}
