"""FAISS wrapper against exact search, manifests, and atomic directory writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.ann.faiss_index import (
    EXACT_TOLERANCE,
    LOSSY_TOLERANCE,
    MAPPED,
    IndexCorruptError,
    add_blocks,
    apply_search_params,
    build_faiss,
    check_scores,
    read_faiss,
    score_tolerance,
    search_faiss,
    search_params,
    write_faiss,
)
from pipeline.config import ProjectorConfig
from pipeline.core.spaces import TEXT, SpaceKey
from pipeline.encoders import EncoderInfo
from pipeline.space.relative import l2_normalize
from pipeline.store.files import atomic_directory
from pipeline.store.manifest import IndexMismatchError, Manifest
from pipeline.store.records import AnchorRecord, Counts, FaissRecord

RNG = np.random.default_rng(1)
XB = l2_normalize(RNG.standard_normal((500, 32)))
XQ = l2_normalize(RNG.standard_normal((20, 32)))


def test_flat_equals_brute_force(tmp_path: Path) -> None:
    index = build_faiss(XB, "Flat")
    D, I = search_faiss(index, XQ, 5)
    scores = XQ @ XB.T
    np.testing.assert_array_equal(I, np.argsort(-scores, axis=1)[:, :5])
    np.testing.assert_allclose(D, np.sort(scores, axis=1)[:, ::-1][:, :5], atol=1e-5)
    write_faiss(index, tmp_path / "x.faiss")
    D2, I2 = search_faiss(read_faiss(tmp_path / "x.faiss"), XQ, 5)
    np.testing.assert_array_equal(I2, I)


def test_trained_factory_recalls_exact_neighbours() -> None:
    """An IVF index (nprobe = nlist) must find the exact top-1, allowing for ties."""
    index = build_faiss(XB, "IVF8,Flat")
    index.nprobe = 8
    _, I = search_faiss(index, XQ, 1)
    assert (I[:, 0] == np.argmax(XQ @ XB.T, axis=1)).mean() == 1.0


def test_k_is_clipped_to_index_size() -> None:
    D, I = search_faiss(build_faiss(XB[:3]), XQ, 10)
    assert I.shape == (20, 3) and (I >= 0).all()


def test_bad_factory_is_named() -> None:
    with pytest.raises(ValueError, match="NotAnIndex"):
        build_faiss(XB, "NotAnIndex")


def _manifest() -> Manifest:
    return Manifest(
        encoders={TEXT: EncoderInfo(spec="minilm", modality="text", dim=384, version="x")},
        anchors=AnchorRecord(hash="a" * 64, count=10, spaces=[SpaceKey.text("en")]),
        projector=ProjectorConfig(),
        faiss=FaissRecord(factory="Flat"),
        counts=Counts(),
        package_version="0",
    )


def test_manifest_check_explains_mismatch() -> None:
    m = _manifest()
    m.check("text", spec="minilm", dim=384)
    with pytest.raises(IndexMismatchError, match=r"built with 'minilm'.*'st:other'"):
        m.check("text", spec="st:other")
    with pytest.raises(IndexMismatchError, match="384.*12"):
        m.check("text", dim=12)
    with pytest.raises(IndexMismatchError, match="anchor set mismatch"):
        m.check_anchors("b" * 64)


def test_manifest_round_trip_and_format_version(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(_manifest().to_json())
    assert Manifest.read(tmp_path) == _manifest()
    (tmp_path / "manifest.json").write_text(_manifest().to_json().replace('"format_version": 3', '"format_version": 99'))
    with pytest.raises(IndexMismatchError, match="index format 99 is newer"):
        Manifest.read(tmp_path)


def test_atomic_directory_replaces_on_success(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_directory(out) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").exists()  # readers still see the old index while the new one is written
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temporary leftovers


def test_atomic_directory_keeps_old_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(out) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert (out / "old.txt").read_text() == "old" and not (out / "half.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "HNSW16", "PCA16,IVF4,Flat"])
def test_search_within_an_id_range(factory: str) -> None:
    """result_lang filters by a row range; IVF indexes need their own search parameters (and keep nprobe)."""
    index = build_faiss(XB, factory)
    if "IVF" in factory:
        import faiss

        faiss.extract_index_ivf(index).nprobe = 8  # every list: the filtered result must equal exact search
    D, I = search_faiss(index, XQ, 10, keep=_rows(100, 200))
    assert ((I >= 100) & (I < 200)).all()
    if factory != "HNSW16":  # HNSW is approximate; the others probe everything here
        sub = XB[100:200]
        expected = np.argsort(-(XQ @ sub.T), axis=1)[:, :10] + 100
        if factory.startswith("PCA"):
            assert (I[:, 0] >= 100).all()
        else:
            np.testing.assert_array_equal(I, expected)


MAPPABLE = ["Flat", "SQ8", "HNSW16", "IVF8,Flat", "IVF8,SQ8", "IVF8,PQ8x4fs,Refine(SQ8)", "PCA16,IVF8,Flat"]


@pytest.mark.parametrize("factory", MAPPABLE)
def test_mmap_read_searches_as_a_normal_read(factory: str, tmp_path: Path) -> None:
    index = build_faiss(XB, factory)
    apply_search_params(index, {k: v for k, v in {"nprobe": 4, "efSearch": 32, "k_factor": 4}.items()
                                if k in search_params(index)})
    write_faiss(index, tmp_path / "x.faiss")
    mapped, read = read_faiss(tmp_path / "x.faiss"), read_faiss(tmp_path / "x.faiss", mmap=False)
    assert mapped.__dict__.get(MAPPED) == str(tmp_path / "x.faiss") and MAPPED not in read.__dict__
    for other in (mapped, read):
        assert search_params(other) == search_params(index)
        for keep in (None, _rows(100, 300)):
            D, I = search_faiss(other, XQ, 10, keep=keep)
            D0, I0 = search_faiss(index, XQ, 10, keep=keep)
            np.testing.assert_array_equal(I, I0)
            np.testing.assert_allclose(D, D0, rtol=1e-6)
    with pytest.raises(ValueError, match="memory-mapped read-only.*mmap=False"):  # FAISS would abort instead
        add_blocks(mapped, [XB[:2]])
    add_blocks(read, [XB[:2]])
    assert read.ntotal == len(XB) + 2


def test_missing_or_damaged_file_is_refused_with_or_without_mmap(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        read_faiss(tmp_path / "none.faiss")
    write_faiss(build_faiss(XB, "IVF8,Flat"), tmp_path / "x.faiss")
    data = (tmp_path / "x.faiss").read_bytes()
    (tmp_path / "x.faiss").write_bytes(data[: len(data) // 2])
    for mmap in (True, False):
        with pytest.raises(ValueError, match="damaged"):
            read_faiss(tmp_path / "x.faiss", mmap=mmap)


def test_apply_search_params_round_trips_and_refuses_unknown_ones() -> None:
    index = build_faiss(XB, "IVF8,PQ8x4fs,Refine(SQ8)")
    assert apply_search_params(index, {"nprobe": 5, "k_factor": 3}) is index
    assert search_params(index) == {"nprobe": 5, "k_factor": 3}
    hnsw = apply_search_params(build_faiss(XB, "HNSW16"), {"efSearch": 77})
    assert search_params(hnsw) == {"efSearch": 77} and hnsw.hnsw.efSearch == 77
    with pytest.raises(ValueError, match="unknown FAISS search parameter 'nprobes'; known: k_factor"):
        apply_search_params(index, {"nprobes": 2})
    with pytest.raises(ValueError, match="'efSearch' does not apply"):
        apply_search_params(index, {"efSearch": 2})


@pytest.mark.parametrize("factory, params", [
    ("IVF8,PQ8x4fs,RFlat", {"nprobe": 8, "k_factor": 100}),  # refine re-ranks every row in range exactly
    ("HNSW16", {"efSearch": 500}),  # a search as wide as the index
])
def test_filtered_search_keeps_tuned_parameters(factory: str, params: dict) -> None:
    """A filtered search passes SearchParameters, which replace the index's own: they must restate them."""
    index = apply_search_params(build_faiss(XB, factory), params)
    _, I = search_faiss(index, XQ, 10, keep=_rows(100, 200))
    np.testing.assert_array_equal(I, np.argsort(-(XQ @ XB[100:200].T), axis=1)[:, :10] + 100)


def _rows(start: int, end: int) -> np.ndarray:
    """A filter mask over XB's ids that keeps ``start <= id < end``."""
    keep = np.zeros(len(XB), dtype=bool)
    keep[start:end] = True
    return keep


@pytest.mark.parametrize(("factory", "tolerance"), [("Flat", EXACT_TOLERANCE), ("HNSW16", EXACT_TOLERANCE),
                                                   ("IVF4,Flat", EXACT_TOLERANCE), ("SQ8", LOSSY_TOLERANCE),
                                                   ("PQ8x4", LOSSY_TOLERANCE), ("IVF4,PQ8x4,RFlat", EXACT_TOLERANCE)])
def test_sound_scores_pass_and_impossible_ones_name_the_file(factory: str, tolerance: float) -> None:
    index = build_faiss(XB, factory)
    assert score_tolerance(index) == tolerance
    D, I = search_faiss(index, XQ, 10)
    check_scores(index, XQ, D, I, "image.faiss")  # a sound index's own scores, lossy codes included
    check_scores(index, 10 * XQ, 10 * D, I, "image.faiss")  # a caller's query of norm 10 scores up to 10
    D[3, 0], I[3, 0] = 1.03e38, 42
    with pytest.raises(IndexCorruptError, match=r"image\.faiss is damaged: vector #42 scored 1\.03e\+38"):
        check_scores(index, XQ, D, I, "image.faiss")
    D[3, 0] = np.nan
    with pytest.raises(IndexCorruptError, match="scored nan"):
        check_scores(index, XQ, D, I, "image.faiss")
    D[3, 0], I[3, 0] = 1e38, -1  # a padded slot (fewer than k passed a filter) is no hit
    check_scores(index, XQ, D, I, "image.faiss")
