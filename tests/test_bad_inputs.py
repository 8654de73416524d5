"""Bad input to build: clear errors that name the item, odd image modes handled, old index kept intact."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import Retriever
from pipeline.config import load_config
from pipeline.data.images import ImageLoadError, load_image

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "pink", "brown"]


def make_folder(root: Path, rows: list[dict[str, str]] | None = None) -> Path:
    """Ten solid-colour images with captions; ``rows`` replace or extend the caption file."""
    root.mkdir(parents=True, exist_ok=True)
    base = []
    for i, c in enumerate(COLOURS):
        Image.new("RGB", (48, 48), c).save(root / f"{c}.png")
        base.append({"id": f"c{i}", "image": f"{c}.png", "caption": f"a {c} square"})
    with open(root / "captions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "image", "caption"])
        w.writeheader()
        w.writerows(base + (rows or []))
    return root


def folder_config(root: Path, cache: Path):
    return load_config(
        {
            "name": "folder",
            # on_error: fail, so that each bad row below stops the build (the default, skip, leaves it out)
            "data": {"source": "folder", "path": str(root), "captions": "captions.csv", "cache_dir": str(cache),
                     "on_error": "fail"},
            "anchors": {"count": 5},
            "projector": {"topk": 3},
            "index": {"thumbnails": 32},
        }
    )


def test_folder_source_builds_and_searches(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    r = Retriever.build(folder_config(root, tmp_path / "cache"), tmp_path / "idx")
    assert r.manifest.counts["image"] == 10
    hits = r.search(image=root / "red.png", k=10, target="image")
    assert hits[0].id == "c0" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert {h.id for h in hits} == {f"c{i}" for i in range(10)}


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"id": "bad", "image": "corrupt.png", "caption": "broken"}, r"item 'bad'.*cannot decode"),
        ({"id": "gone", "image": "missing.png", "caption": "missing"}, r"item 'gone'.*not found"),
        ({"id": "mute", "image": "red.png", "caption": ""}, r"item 'mute'.*empty caption"),
        ({"id": "c1", "image": "red.png", "caption": "dup"}, r"duplicate id 'c1'"),
    ],
    ids=["corrupt", "missing", "empty-caption", "duplicate-id"],
)
def test_bad_item_fails_build_and_keeps_old_index(tmp_path: Path, extra: dict, match: str) -> None:
    root = make_folder(tmp_path / "imgs")
    cache = tmp_path / "cache"
    out = tmp_path / "idx"
    good = Retriever.build(folder_config(root, cache), out)
    before = [h.id for h in good.search(text="a red square", k=5)]
    manifest = (out / "manifest.json").read_bytes()

    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    make_folder(root, [extra])
    with pytest.raises(ValueError, match=match):
        Retriever.build(folder_config(root, cache), out)

    assert (out / "manifest.json").read_bytes() == manifest
    again = Retriever.load(out)
    assert [h.id for h in again.search(text="a red square", k=5)] == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".idx")]  # no temp dirs left


def _cmyk(p: Path) -> None:
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(p, format="JPEG")


def _palette_transparent(p: Path) -> None:
    img = Image.new("P", (40, 40), 1)
    img.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    img.save(p, transparency=0)


def _sixteen_bit(p: Path) -> None:
    arr = (np.linspace(0, 65535, 40 * 40).reshape(40, 40)).astype(np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    img.save(p)


def _rgba(p: Path) -> None:
    Image.new("RGBA", (40, 40), (0, 0, 255, 0)).save(p)


@pytest.mark.parametrize("writer", [_cmyk, _palette_transparent, _sixteen_bit, _rgba], ids=lambda f: f.__name__)
def test_odd_modes_become_rgb(tmp_path: Path, writer) -> None:
    p = tmp_path / "img.jpg" if writer is _cmyk else tmp_path / "img.png"
    writer(p)
    img = load_image(p, item="x")
    assert img.mode == "RGB" and img.size == (40, 40)
    arr = np.asarray(img)
    if writer is _sixteen_bit:
        assert arr.min() == 0 and arr.max() == 255  # rescaled, not clipped to white
    if writer is _rgba:
        assert (arr == 255).all()  # fully transparent pixels composite onto white


def test_odd_modes_build(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    _cmyk(root / "cmyk.jpg")
    _palette_transparent(root / "pal.png")
    _sixteen_bit(root / "deep.png")
    make_folder(root, [{"id": n, "image": f, "caption": f"odd {n}"}
                       for n, f in (("cmyk", "cmyk.jpg"), ("pal", "pal.png"), ("deep", "deep.png"))])
    r = Retriever.build(folder_config(root, tmp_path / "cache"), tmp_path / "idx")
    assert r.manifest.counts["image"] == 13
    assert r.search(image=root / "deep.png", k=1, target="image")[0].id == "deep"


def test_load_image_errors_name_item(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="item 'z'.*not found"):
        load_image(tmp_path / "nope.png", item="z")
    with pytest.raises(ImageLoadError, match="item 'q'.*cannot decode"):
        load_image(b"garbage", item="q")


def test_failed_first_build_leaves_nothing(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", [{"id": "gone", "image": "missing.png", "caption": "x"}])
    with pytest.raises(ValueError, match="gone"):
        Retriever.build(folder_config(root, tmp_path / "cache"), tmp_path / "idx")
    assert not (tmp_path / "idx").exists()
    shutil.rmtree(root)
