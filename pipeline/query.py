"""A search query and the one routine that checks it, so the CLI, the Python API and the server share every rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .core.limits import Limits
from .core.spaces import MODALITIES


class QueryError(ValueError):
    """A query that breaks a rule; the message says which rule and what would be accepted."""


@dataclass(frozen=True)
class Query:
    """What one search asks for. Build it freely; :meth:`validate` says whether an index can answer it.

    Text longer than the limit is an error, never silently truncated: a cut query would search for
    something the caller did not write, and every entry point (CLI, API, HTTP) must answer the same.
    """

    text: str | None = None  # the query text; give this or ``image``, not both
    image: Any = None  # a PIL image, a path or encoded bytes
    k: int = 10  # number of hits, 1..limits.max_k
    target: str | None = None  # "image" or "text"; default the other modality
    lang: str | None = None  # language of a text query; default the index's first
    result_lang: str | None = None  # keep only captions in this language (needs target "text")

    @property
    def modality(self) -> str:
        """What the query is: "text" or "image"."""
        return "text" if self.text is not None else "image"

    def validate(self, *, languages: Sequence[str], caption_languages: Sequence[str], limits: Limits) -> Query:
        """Check every rule against an index's languages and the limits; return the query with defaults filled.

        Idempotent: a validated query validates to itself.

        Args:
            languages: languages a text query can be projected in (the index's anchor caption languages).
            caption_languages: languages of the stored captions that ``result_lang`` may select.
            limits: the bounds on ``k`` and text length.

        Returns:
            A copy with the text stripped, ``target`` and (for text) ``lang`` filled in.

        Raises:
            QueryError: a rule is broken; the message names it.
        """
        text = self.text
        check_one_query(text, self.image)
        if text is not None:
            if not isinstance(text, str):
                raise QueryError(f"text must be a string, got {type(text).__name__}")
            text = text.strip()
            if not text:
                raise QueryError("text must be a non-empty string; it is empty or only whitespace")
            if len(text) > limits.max_text_chars:
                raise QueryError(f"text has {len(text)} characters; the limit is {limits.max_text_chars}")
        k = self.k
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= limits.max_k:
            raise QueryError(f"k must be an integer between 1 and {limits.max_k}, got {k!r}")
        target = self.target or ("image" if text is not None else "text")
        if target not in MODALITIES:
            raise QueryError(f"target must be one of {list(MODALITIES)}, got {target!r}")
        lang = check_lang(self.lang, languages, text=text is not None)
        check_result_lang(self.result_lang, caption_languages, target=target)
        return replace(self, text=text, target=target, lang=lang)


# The rules below are the parts of :meth:`Query.validate` that also bind the vector API (``Retriever.embed``,
# ``Retriever.search_vectors``), which takes texts in batches and no Query: one rule each, one message.


def check_one_query(text: Any, image: Any) -> None:
    """A query is a text or an image: exactly one of the two."""
    if text is not None and image is not None:
        raise QueryError("give either a text query or a query image, not both")
    if text is None and image is None:
        raise QueryError("give a text query or a query image (exactly one of the two)")


def check_lang(lang: str | None, languages: Sequence[str], *, text: bool) -> str | None:
    """The language a text query is projected in: ``lang`` if the index has anchor captions in it, by default
    the index's first (None when it has none); an image query has no language."""
    if lang is None:
        return languages[0] if text and languages else None
    if not text:
        raise QueryError("lang is the language of a text query; an image query has none")
    if lang not in languages:
        raise QueryError(f"unknown lang {lang!r}: no anchor captions in language {lang!r}; "
                         f"this index has {list(languages)}")
    return lang


def check_result_lang(result_lang: str | None, caption_languages: Sequence[str], *, target: str) -> None:
    """``result_lang`` keeps the captions of one stored language, so it needs a caption search in a known one."""
    if result_lang is None:
        return
    if target != "text":
        raise QueryError("result_lang filters captions; it needs target 'text'")
    if result_lang not in caption_languages:
        raise QueryError(f"unknown result_lang {result_lang!r}: no captions in language "
                         f"{result_lang!r}; this index has {list(caption_languages)}")
