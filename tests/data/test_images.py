"""The one image rule (pipeline.data.images): decoded and resized size within the pixel limit, the aspect ratio
within its bound, refused from the header before any pixel is decoded; JPEGs decoded at a reduced scale."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pipeline.core.limits import DRAFT_SIDE, ENCODER_SIDE, MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, Limits
from pipeline.data.images import (
    ImageShapeError,
    ImageTooLargeError,
    check_size,
    load_image,
    measure_image,
    pixel_cost,
    resized_pixels,
)

from ..bomb import png_header

EXTREME = [(100_000, 1), (1, 100_000), (30_000, 2), (2, 30_000), (4000, 1), (51, 1)]


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("size", EXTREME, ids=lambda s: f"{s[0]}x{s[1]}")
def test_extreme_aspect_ratios_are_refused_from_the_header(tmp_path: Path, size: tuple[int, int]) -> None:
    """The 370-byte 100000x1 PNG passed the pixel limit, and the encoder's resize made it 16,000,000x160."""
    w, h = size
    path = tmp_path / "thin.png"
    path.write_bytes(_png(w, h))  # a real, decodable PNG: only the rule stands between it and the resize
    for source in (path, path.read_bytes()):
        with pytest.raises(ImageShapeError, match=rf"the query image.* is {w}x{h}, an aspect ratio of .*the limit "
                                                  rf"is {MAX_ASPECT_RATIO}:1"):
            load_image(source, what="the query image")
        with pytest.raises(ImageShapeError):
            measure_image(source, what="the query image")


def test_retriever_search_refuses_the_thin_png(small_retriever) -> None:
    with pytest.raises(ImageShapeError, match="the query image is 100000x1, an aspect ratio of 100,000:1"):
        small_retriever.search(image=png_header(100_000, 1), k=3)


@pytest.mark.parametrize("size", [(160, 160), (4000, 3000), (72, 72), (300, 6000), (6000, 600), (1, 1), (50, 1)],
                         ids=["emoji", "photo", "small-emoji", "receipt", "panorama", "pixel", "at-bound"])
def test_real_shapes_pass(size: tuple[int, int]) -> None:
    w, h = size
    img = load_image(_png(w, h))
    assert img.size == (w, h) and img.mode == "RGB"


def test_resize_bound_holds_for_a_raised_aspect_ratio() -> None:
    """The aspect bound is a Limits knob; raised, the resized size still has to fit the pixel limit."""
    with pytest.raises(ImageTooLargeError, match="too large once resized for the encoder: 1000x1 becomes 268324000"):
        check_size("x", 1000, 1, MAX_IMAGE_PIXELS, 1000)  # 518 x 518,000
    check_size("x", 70, 1, MAX_IMAGE_PIXELS, 1000)  # 518 x 36,260 = 18.8 MP: fits


@given(w=st.integers(1, 200_000), h=st.integers(1, 200_000), max_pixels=st.sampled_from([10_000, MAX_IMAGE_PIXELS]),
       aspect=st.sampled_from([1, 2, MAX_ASPECT_RATIO, 1000]))
def test_accepted_iff_within_bounds_and_never_beyond_the_limit(w: int, h: int, max_pixels: int, aspect: int) -> None:
    """Any size: accepted exactly when within the documented bounds, and what is accepted decodes and resizes
    within the limit (or within one encoder square, the least any image costs the model)."""
    within = (w * h <= max_pixels and max(w, h) <= aspect * min(w, h)
              and resized_pixels(w, h) <= max(max_pixels, ENCODER_SIDE**2))
    try:
        check_size("x", w, h, max_pixels, aspect)
        accepted = True
    except (ImageTooLargeError, ImageShapeError):
        accepted = False
    assert accepted is within
    if accepted:
        assert w * h <= max_pixels and pixel_cost(w, h) <= max(max_pixels, ENCODER_SIDE**2)
        if aspect <= MAX_ASPECT_RATIO:  # the default bound keeps every resize small, whatever the limit
            assert resized_pixels(w, h) <= ENCODER_SIDE * ENCODER_SIDE * MAX_ASPECT_RATIO + ENCODER_SIDE


@given(long=st.integers(1, 400), short=st.integers(1, 40))
def test_load_image_agrees_with_the_rule_on_real_files(long: int, short: int) -> None:
    """Decoding real PNGs: accepted iff the rule accepts, under a small limit that makes both bounds bite."""
    limits = Limits(max_image_pixels=2000, max_aspect_ratio=5)
    try:
        check_size("x", long, short, limits.max_image_pixels, limits.max_aspect_ratio)
        ok = True
    except (ImageTooLargeError, ImageShapeError):
        ok = False
    try:
        img = load_image(_png(long, short), max_pixels=limits.max_image_pixels, max_aspect_ratio=5)
    except (ImageTooLargeError, ImageShapeError):
        assert not ok
    else:
        assert ok and img.width * img.height <= limits.max_image_pixels


def test_large_jpeg_is_decoded_at_a_reduced_scale() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (6000, 4500), (10, 120, 200)).save(buf, "JPEG")
    img = load_image(buf.getvalue())
    assert min(img.size) >= DRAFT_SIDE and img.size == (1500, 1125)  # 1/4: 1/8 would go under DRAFT_SIDE
    assert img.mode == "RGB"
    small = io.BytesIO()
    Image.new("RGB", (800, 600)).save(small, "JPEG")
    assert load_image(small.getvalue()).size == (800, 600)  # small ones are decoded whole


def test_limits_refuse_a_budget_below_one_image() -> None:
    with pytest.raises(ValueError, match="max_inflight_pixels .* must be at least max_image_pixels"):
        Limits(max_image_pixels=100, max_inflight_pixels=99)
