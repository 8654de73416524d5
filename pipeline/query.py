"""A search query and the one routine that checks it, so the CLI, the Python API and the server share every rule."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .core.limits import Limits
from .core.spaces import MODALITIES


class QueryError(ValueError):
    """A query that breaks a rule; the message says which rule and what would be accepted."""


# Characters that draw nothing, as inclusive code point ranges: controls, formats (zero-width space and
# joiners, BOM, bidi marks, tags), surrogates, separators and whitespace, and the blank letters (Hangul
# fillers, the blank braille pattern) and variation selectors that show nothing on their own. A text of only
# these is refused: it reached the encoder as a search for "nothing" (or, for a lone surrogate, failed in the
# tokenizer). Private-use and unassigned code points count as visible: OpenMoji draws its extra emoji in the
# private-use area, and a newer emoji may be unknown to this Python. A table, not unicodedata at run time,
# so the schema's regex and this rule agree on every Python; tests/test_query.py derives it from the categories.
INVISIBLE: tuple[tuple[int, int], ...] = (
    (0x0000, 0x0020), (0x007F, 0x00A0), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD),
    (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x115F, 0x1160), (0x1680, 0x1680), (0x180E, 0x180E),
    (0x2000, 0x200F), (0x2028, 0x202F), (0x205F, 0x2064), (0x2066, 0x206F), (0x2800, 0x2800), (0x3000, 0x3000),
    (0x3164, 0x3164), (0xD800, 0xDFFF), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001), (0xE0020, 0xE007F), (0xE0100, 0xE01EF),
)
_STARTS = [lo for lo, _ in INVISIBLE]


def invisible(ch: str) -> bool:
    """Whether ``ch`` draws nothing on its own (see INVISIBLE)."""
    o = ord(ch)
    i = bisect.bisect_right(_STARTS, o) - 1
    return i >= 0 and o <= INVISIBLE[i][1]


def check_text(text: str, limits: Limits) -> str:
    """The text rule, shared by every entry point: valid Unicode, within the length limit, something visible.

    The length is counted before stripping, as the published schema's ``maxLength`` counts it.

    Returns:
        The text stripped of surrounding whitespace.
    """
    if len(text) > limits.max_text_chars:
        raise QueryError(f"text has {len(text)} characters; the limit is {limits.max_text_chars}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: JSON's "\ud800" decodes to one, no encoder reads it
        raise QueryError(f"text is not valid Unicode: a lone surrogate U+{ord(text[e.start]):04X} at "
                         f"position {e.start}; send UTF-8 text (surrogates only in pairs)") from None
    text = text.strip()
    if not text:
        raise QueryError("text must be a non-empty string; it is empty or only whitespace")
    if all(invisible(c) for c in text):
        shown = " ".join(f"U+{ord(c):04X}" for c in text[:8]) + (" ..." if len(text) > 8 else "")
        raise QueryError(f"text has no visible character (only {shown}: zero-width or blank characters)")
    return text


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
            text = check_text(text, limits)
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
