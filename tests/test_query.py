"""Query validation and the limits, without an index: one routine holds every rule of a search."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.limits import MAX_IMAGE_PIXELS, Limits
from pipeline.data.images import ImageLoadError, ImageTooLargeError, load_image
from pipeline.query import Query, QueryError

from .bomb import HUGE_MESSAGE, png_header

LANGS = {"languages": ["en", "es"], "caption_languages": ["en", "es"], "limits": Limits()}


def test_defaults_are_filled_and_validation_is_idempotent() -> None:
    q = Query(text="  a red apple \n", k=5).validate(**LANGS)
    assert q == Query(text="a red apple", k=5, target="image", lang="en")
    assert q.validate(**LANGS) == q
    img = Query(image=b"png bytes").validate(**LANGS)
    assert img.target == "text" and img.lang is None and img.modality == "image"


@pytest.mark.parametrize(
    "query, message",
    [
        (Query(), "exactly one"),
        (Query(text="cat", image=b"x"), "not both"),
        (Query(text=5), "text must be a string"),
        (Query(text=" \t"), "non-empty"),
        (Query(text="a" * 1001), "text has 1001 characters; the limit is 1000"),
        (Query(text="a" * 1_000_000), "the limit is 1000"),
        (Query(text="cat", k=0), "k must be an integer between 1 and 100, got 0"),
        (Query(text="cat", k=101), "between 1 and 100"),
        (Query(text="cat", k=10**9), "got 1000000000"),
        (Query(text="cat", k=True), "got True"),
        (Query(text="cat", k=2.0), "got 2.0"),
        (Query(text="cat", target="video"), "target must be one of"),
        (Query(text="cat", lang="fr"), "unknown lang 'fr'"),
        (Query(image=b"x", lang="en"), "an image query has none"),
        (Query(text="cat", result_lang="es"), "needs target 'text'"),
        (Query(image=b"x", result_lang="fr"), "unknown result_lang 'fr'"),
    ],
)
def test_every_rule_has_one_clear_error(query: Query, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        query.validate(**LANGS)


def test_limits_bound_the_rules() -> None:
    small = {**LANGS, "limits": Limits(max_k=3, max_text_chars=5)}
    assert Query(text="cat", k=3).validate(**small).k == 3
    with pytest.raises(QueryError, match="between 1 and 3"):
        Query(text="cat", k=4).validate(**small)
    with pytest.raises(QueryError, match="limit is 5"):
        Query(text="kitten").validate(**small)


def test_one_pixel_limit_everywhere() -> None:
    from pipeline.serve import Limits as ServeLimits

    assert ServeLimits is Limits and Limits().max_image_pixels == MAX_IMAGE_PIXELS == 40_000_000
    assert Image.MAX_IMAGE_PIXELS is None  # PIL's own guard is off: ours always speaks first


@pytest.mark.parametrize("size", [(7000, 7000), (20_000, 20_000), (100_000, 100_000)])
def test_huge_image_is_refused_from_its_header_in_our_words(tmp_path: Path, size: tuple[int, int]) -> None:
    """Above the limit (also between the old 40M and 64M limits, and past PIL's own bomb error)."""
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(*size))
    for source in (path, path.read_bytes()):
        with pytest.raises(ImageTooLargeError, match=f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels") as e:
            load_image(source, item="big")
        assert "exceeds the limit of 40000000 pixels" in str(e.value)
        assert "bomb" not in str(e.value).lower() and "178956970" not in str(e.value)
    with pytest.raises(ImageTooLargeError, match=HUGE_MESSAGE):
        load_image(png_header(20_000, 20_000), what="the query image")


def test_pil_bomb_error_becomes_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host application that re-enables PIL's guard still gets the project's message."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageTooLargeError, match="the query image is too large: .*limit of 40000000 pixels"):
        load_image(png_header(20_000, 20_000), what="the query image")


def test_pixel_limit_is_a_parameter() -> None:
    with pytest.raises(ImageTooLargeError, match="limit of 99 pixels"):
        load_image(png_header(10, 10), max_pixels=99)
    with pytest.raises(ImageLoadError, match="the query image: cannot decode image: not a format"):
        load_image(b"garbage", what="the query image")


@pytest.mark.parametrize(
    "text, message",
    [
        ("\ud800", "text is not valid Unicode: a lone surrogate U\\+D800 at position 0"),
        ("a red \udfff apple", "lone surrogate U\\+DFFF at position 6"),
        ("\u200b\u200c", "no visible character \\(only U\\+200B U\\+200C"),
        ("\ufeff \u2060\u3164", "no visible character"),
        ("\ufe0f", "no visible character"),
        (" " * 995 + "kitten", "text has 1001 characters; the limit is 1000"),  # counted as sent, as the schema
    ],
    ids=["lone-surrogate", "surrogate-inside", "zero-width", "bom-joiner-filler", "variation-selector", "padded"],
)
def test_text_rule_refuses_what_no_encoder_can_read(text: str, message: str) -> None:
    """A lone surrogate reached the tokenizer (TypeError, a 500); zero-width text was searched for "nothing"."""
    with pytest.raises(QueryError, match=message):
        Query(text=text).validate(**LANGS)


@pytest.mark.parametrize("text", ["🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", "\ue000",
                                  "x\u200b", "👍🏽", "ñ", "\u0301a"])
def test_visible_text_passes(text: str) -> None:
    """Flags made of tag characters, OpenMoji's private-use emoji, joined text: something draws."""
    assert Query(text=f" {text} ").validate(**LANGS).text == text


def test_invisible_table_is_the_unicode_categories() -> None:
    """INVISIBLE is a table (the schema's regex is built from it); this derives it again from this Python's
    Unicode data: controls, formats, surrogates, separators, whitespace, blank letters, variation selectors."""
    import sys
    import unicodedata

    from pipeline.query import INVISIBLE, invisible

    def derived(o: int) -> bool:
        ch = chr(o)
        return (ch.isspace() or unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"}
                or ch in "\u115f\u1160\u2800\u3164\uffa0" or 0xFE00 <= o <= 0xFE0F or 0xE0100 <= o <= 0xE01EF)

    table = {o for lo, hi in INVISIBLE for o in range(lo, hi + 1)}
    assert table == {o for o in range(sys.maxunicode + 1) if derived(o)}
    assert all(invisible(chr(o)) for o in table) and not invisible("a") and not invisible("\ue000")
