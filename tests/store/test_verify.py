"""Checksums on every published file, ``relspace verify``, and the cheap checks every load and ``info`` make.

The small index is copied once for the module; each test damages a copy of that copy, or damages a file and
restores its bytes, so the module stays well under 30 s.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import Retriever
from pipeline.ann.faiss_index import IndexCorruptError
from pipeline.cli.main import main
from pipeline.store.layout import MANIFEST, SHARD_META, SHARDS, index_file, vectors_file
from pipeline.store.manifest import Manifest
from pipeline.store.shards import list_shards, read_meta
from pipeline.store.verify import verify_index


@pytest.fixture(scope="module")
def base(small_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the small index, restored by every test that damages it."""
    out = tmp_path_factory.mktemp("verify") / "idx"
    shutil.copytree(small_index, out)
    return out


def copy_of(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base, tmp_path / "idx")
    return tmp_path / "idx"


def verify(index: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["-q", "verify", str(index)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_published_file_is_recorded_and_a_clean_index_passes(base: Path, capsys) -> None:
    files = Manifest.read(base).files
    top = {f.name for f in base.iterdir() if f.is_file() and f.name != MANIFEST}
    shard_metas = {f"{SHARDS}/{p.name}/{SHARD_META}" for p in list_shards(base / SHARDS)}
    assert set(files) == top | shard_metas
    assert {"image.faiss", "text.faiss", "projector.safetensors", "anchors.parquet", "config.yaml"} <= top
    assert all(rec.bytes == (base / name).stat().st_size for name, rec in files.items())
    code, out, err = verify(base, capsys)
    assert code == 0, out + err
    assert "ok" in out


def test_one_flipped_byte_in_any_file_is_named(base: Path, capsys) -> None:
    """Every file the manifest lists, and a shard's vectors and item table (covered through its shard.json)."""
    shard = list_shards(base / SHARDS)[0]
    names = [*Manifest.read(base).files, *(f"{SHARDS}/{shard.name}/{n}" for n in read_meta(shard).files)]
    assert f"{SHARDS}/{shard.name}/{vectors_file('image')}" in names
    for name in names:
        path = base / name
        original = path.read_bytes()
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0x01
        path.write_bytes(bytes(damaged))
        try:
            code, out, _ = verify(base, capsys)
        finally:
            path.write_bytes(original)
        assert code == 1, name
        lines = out.splitlines()
        assert f"damaged: {base}/{name}: checksum differs from the one published (its contents changed)" in lines
        if not name.endswith(SHARD_META):  # a flip in a recorded checksum also misnames that shard file's contents
            assert all(line.startswith(f"damaged: {base}/{name}: ") for line in lines), (name, out)  # that file only
    assert verify(base, capsys)[0] == 0  # every byte restored


def test_an_index_without_checksums_is_never_a_pass(base: Path, tmp_path: Path, capsys) -> None:
    index = copy_of(base, tmp_path)
    data = json.loads((index / MANIFEST).read_text())
    del data["files"]
    (index / MANIFEST).write_text(json.dumps(data))
    code, out, err = verify(index, capsys)
    assert code == 3
    assert f"{index} has no checksums (written by an older relspace): rebuild it to verify" in err
    with pytest.raises(IndexCorruptError, match="has no checksums"):
        Retriever.load(index, verify=True)
    Retriever.load(index)  # a plain load still reads an older index


def test_a_truncated_file_is_refused_at_load_and_by_info(base: Path, tmp_path: Path, capsys) -> None:
    index = copy_of(base, tmp_path)
    path = index / index_file("text")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IndexCorruptError, match=r"text\.faiss: \d+ bytes, but \d+ were published"):
        Retriever.load(index)
    assert main(["-q", "info", str(index)]) == 1
    out = capsys.readouterr()
    assert "anchors" in out.out  # still prints what it can
    assert f"damaged: {index}/text.faiss" in out.err
    code, out, _ = verify(index, capsys)
    assert code == 1 and f"{index}/text.faiss" in out


def test_info_of_an_older_index_with_a_truncated_faiss_file_fails(base: Path, tmp_path: Path, capsys) -> None:
    index = copy_of(base, tmp_path)
    data = json.loads((index / MANIFEST).read_text())
    del data["files"]  # no sizes recorded: the FAISS file itself must be read to notice
    (index / MANIFEST).write_text(json.dumps(data))
    path = index / index_file("text")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert main(["-q", "info", str(index)]) == 1
    assert "text.faiss" in capsys.readouterr().err
    assert main(["-q", "info", str(base)]) == 0


def _stored_vector(index: Path, modality: str, row: int) -> np.ndarray:
    return np.load(list_shards(index / SHARDS)[0] / vectors_file(modality))[row]


def test_a_flipped_exponent_is_corruption_never_a_result(base: Path, tmp_path: Path, capsys) -> None:
    index = copy_of(base, tmp_path)
    row = 5
    vec = _stored_vector(index, "image", row)
    path = index / index_file("image")
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(vec.tobytes())
    assert at > 0 and bytes(raw).count(vec.tobytes()) == 1  # the Flat index stores the float32 rows as they are
    j = int(np.argmax(vec))  # a positive component: its exponent byte set high makes it ~1e38
    raw[at + 4 * j + 3] = 0x7E
    path.write_bytes(bytes(raw))

    code, out, _ = verify(index, capsys)
    assert code == 1
    lines = out.splitlines()
    assert f"damaged: {index}/image.faiss: checksum differs from the one published (its contents changed)" in lines
    assert any(line.startswith(f"damaged: {index}/image.faiss: vector #{row} has norm ") for line in lines), out
    with pytest.raises(IndexCorruptError, match=r"image\.faiss: vector #5"):
        Retriever.load(index, verify=True)

    r = Retriever.load(index)  # sizes are intact: only the scores show it
    with pytest.raises(IndexCorruptError, match=rf"{index / 'image.faiss'} is damaged: vector #{row} scored"):
        r.search_vectors(vec[None, :], k=5, target="image")
    # The opposite query scores vector #5 at -1e38, out of its top 3: those hits are sound and answered.
    hits = r.search_vectors(-vec[None, :], k=3, target="image")[0]
    assert len(hits) == 3 and all(abs(h.score) <= 1.001 for h in hits)


def test_a_nan_in_a_shard_is_named_by_file_and_row(base: Path, tmp_path: Path) -> None:
    index = copy_of(base, tmp_path)
    shard = list_shards(index / SHARDS)[-1]
    path = shard / vectors_file("text")
    vectors = np.load(path)
    vectors[2, 0] = np.nan
    np.save(path, vectors)
    report = verify_index(index)
    assert not report.ok
    name = f"{SHARDS}/{shard.name}/{vectors_file('text')}"
    assert {str(p) for p in report.problems} >= {
        f"{name}: checksum differs from the one published (its contents changed)",
        f"{name}: vector #2 has norm nan, impossible for a relative vector",
    }
