"""Encoder swapping: only anchors are re-embedded, stored vectors stay, the update is atomic and checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline import Retriever
from pipeline.cli import main
from pipeline.core.spaces import TEXT, SpaceKey
from pipeline.store.manifest import IndexMismatchError
from pipeline.store.verify import verify_index

from ..conftest import tree_bytes


@pytest.fixture()
def index_copy(small_index: Path, tmp_path: Path) -> Path:
    out = tmp_path / "idx"
    shutil.copytree(small_index, out)
    return out


def test_swap_text_encoder_keeps_stored_vectors(index_copy: Path) -> None:
    image_inode = (index_copy / "image.faiss").stat().st_ino
    r = Retriever.load(index_copy)
    before = r.indexes["text"].reconstruct(0)
    r.swap_encoder("text", "minilm-l3", in_place=True)
    m = json.loads((index_copy / "manifest.json").read_text())
    assert m["encoders"]["text"]["spec"] == "minilm-l3" and m["stored_by"]["text"]["spec"] == "minilm"
    entry = m["history"][-1]
    assert entry.pop("generation") == m["generation"] and entry.pop("at")  # the publish it made, and when
    assert entry == {"op": "reanchor", "modality": "text", "from": "minilm", "to": "minilm-l3", "anchors": 80}
    # the FAISS files were linked, not rewritten: re-anchoring never touches the corpus vectors
    assert (index_copy / "image.faiss").stat().st_ino == image_inode
    again = Retriever.load(index_copy)
    assert (again.indexes["text"].reconstruct(0) == before).all()
    report = verify_index(index_copy)  # the new projector file's checksum is recorded, not the old one's
    assert report.ok and "projector.safetensors" in report.checked, report.problems
    hits = again.search(text="a red heart", k=5)
    assert len(hits) == 5 and all(h.modality == "image" for h in hits)
    assert again.encoder("text").spec == "minilm-l3"
    with pytest.raises(IndexMismatchError, match="minilm-l3"):
        Retriever.load(index_copy, text_encoder="minilm")


def test_swap_refuses_tampered_anchors(index_copy: Path) -> None:
    from pipeline.space.anchors import AnchorSet

    r = Retriever.load(index_copy)  # before the tampering, which a load now refuses by the file's size
    a = AnchorSet.load(index_copy / "anchors.parquet")
    a.captions["en"][0] = [a.captions["en"][0][0] + " (edited)"]  # an anchor's captions are a list
    a.save(index_copy / "anchors.parquet")
    manifest = (index_copy / "manifest.json").read_text()
    with pytest.raises(IndexMismatchError, match="anchor set mismatch"):
        r.swap_encoder("text", "minilm-l3", in_place=True)
    assert (index_copy / "manifest.json").read_text() == manifest


def test_failed_swap_changes_nothing(index_copy: Path) -> None:
    files = tree_bytes(index_copy)
    with pytest.raises(ValueError, match="unknown encoder"):
        Retriever.load(index_copy).swap_encoder("text", "nope:model", in_place=True)
    assert tree_bytes(index_copy) == files


def test_reanchor_cli(index_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "reanchor", str(index_copy), "--text-encoder", "minilm-l3", "--in-place"]) == 0
    assert "re-anchored text" in capsys.readouterr().out
    assert main(["-q", "search", str(index_copy), "--text", "a dog", "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_per_language_text_encoder(small_config, tmp_path: Path) -> None:
    """A language can have its own text encoder; its captions and anchors are embedded by it alone."""
    from pipeline.config import load_config

    cfg = load_config(small_config, **{"text_encoders": {"es": "minilm-l3"}})
    r = Retriever.build(cfg, tmp_path / "idx")
    m = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert m["encoders"]["text"]["spec"] == "minilm" and m["encoders"]["text:es"]["spec"] == "minilm-l3"
    assert r.encoder("text", "es").spec == "minilm-l3" and r.encoder("text", "en").spec == "minilm"
    # an indexed Spanish caption, embedded by the Spanish encoder, finds its own stored row first
    row = r.items["text"].filter(pa_equal(r.items["text"], "lang", "es")).slice(0, 1).to_pylist()[0]
    hit = r.search(text=row["caption"], lang="es", target="text", result_lang="es", k=1)[0]
    assert hit.caption == row["caption"]
    # re-anchoring the shared encoder leaves the Spanish one alone, and vice versa
    r.swap_encoder("text", "minilm-l3", in_place=True)
    assert r.manifest.encoders[TEXT].spec == "minilm-l3" and r.manifest.encoders[SpaceKey.text("es")].spec == "minilm-l3"
    r.swap_encoder("text", "minilm", lang="es", in_place=True)
    assert r.manifest.encoders[SpaceKey.text("es")].spec == "minilm" and r.manifest.encoders[TEXT].spec == "minilm-l3"
    with pytest.raises(ValueError, match="lang='fr'"):
        r.swap_encoder("text", "minilm", lang="fr", in_place=True)


def test_swap_to_a_new_directory_leaves_the_original_usable(index_copy: Path, tmp_path: Path) -> None:
    """The README's swap must not change the index it names: the destination is explicit."""
    files = tree_bytes(index_copy)
    r = Retriever.load(index_copy)
    with pytest.raises(ValueError, match="out=DIR"):
        r.swap_encoder("text", "minilm-l3")  # neither out= nor in_place=True: refused, nothing written
    swapped = r.swap_encoder("text", "minilm-l3", out=tmp_path / "swapped")
    assert swapped.encoder("text").spec == "minilm-l3" and swapped.index_dir == tmp_path / "swapped"
    assert tree_bytes(index_copy) == files
    assert Retriever.load(index_copy, text_encoder="minilm").search(text="a dog", k=3)
    assert r.manifest.encoders[TEXT].spec == "minilm"  # the original Retriever is unchanged too


def test_reanchor_cli_needs_a_destination(index_copy: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["-q", "reanchor", str(index_copy), "--text-encoder", "minilm-l3"])
    assert "--out" in capsys.readouterr().err
    assert main(["-q", "reanchor", str(index_copy), "--text-encoder", "minilm-l3", "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["encoders"]["text"]["spec"] == "minilm-l3"
    assert json.loads((index_copy / "manifest.json").read_text())["encoders"]["text"]["spec"] == "minilm"


def pa_equal(table, column: str, value: str):
    import pyarrow.compute as pc

    return pc.equal(table.column(column), value)


def test_out_naming_the_index_itself_needs_in_place(index_copy: Path) -> None:
    files = tree_bytes(index_copy)
    with pytest.raises(ValueError, match="is the index itself; pass in_place=True"):
        Retriever.load(index_copy).swap_encoder("text", "minilm-l3", out=index_copy / ".." / index_copy.name)
    assert tree_bytes(index_copy) == files


def test_cli_checks_every_spec_before_swapping_any(index_copy: Path, capsys) -> None:
    """A bad image spec must not leave the index re-anchored on the text side only."""
    files = tree_bytes(index_copy)
    assert main(["-q", "reanchor", str(index_copy), "--text-encoder", "minilm-l3", "--image-encoder", "bogus:x",
                 "--in-place"]) == 2
    assert "unknown encoder 'bogus:x'" in capsys.readouterr().err
    assert tree_bytes(index_copy) == files
