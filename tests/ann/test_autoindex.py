"""index.factory: auto against exact search, on clustered synthetic data with cross-modal-like queries."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from pipeline.ann.auto import BudgetError, IndexBudget, choose_index, exact_knn, recall_at_k
from pipeline.ann.candidates import CANDIDATES, nlist, ordered, pq_m
from pipeline.ann.faiss_index import build_faiss, search_params, write_faiss
from pipeline.cli import main
from pipeline.config import ConfigError, IndexConfig, ProjectorConfig, load_config
from pipeline.core.spaces import IMAGE, TEXT, SpaceKey
from pipeline.encoders import EncoderInfo
from pipeline.store.layout import MANIFEST
from pipeline.store.manifest import Manifest
from pipeline.store.records import AnchorRecord, AutoChoice, Counts, FaissRecord, read_record

N, M, CLUSTERS = 20_000, 64, 200
RNG = np.random.default_rng(0)
CENTRES = RNG.standard_normal((CLUSTERS, M)).astype(np.float32)


def _draw(n: int, shift: np.ndarray | float = 0.0) -> np.ndarray:
    x = CENTRES[RNG.integers(CLUSTERS, size=n)] + shift + 0.5 * RNG.standard_normal((n, M), dtype=np.float32)
    faiss.normalize_L2(x)
    return x


XB = _draw(N)
# The other modality: fresh points of the same clusters, off by a constant gap, never rows of the index.
XQ = _draw(400, shift=0.3 * RNG.standard_normal(M).astype(np.float32))
BLOCKS = [XB[i : i + 2000] for i in range(0, N, 2000)]  # shards in id order; never stacked by the chooser


@pytest.fixture(scope="module")
def compressed() -> tuple[object, dict]:
    """A 4 MiB budget: Flat, IVF-Flat, HNSW and IVF-SQfp16 need more once the training sample counts."""
    return choose_index(BLOCKS, XQ, IndexBudget(max_memory=4 << 20, max_query_ms=None), train_size=5000)


def test_choice_meets_recall_on_cross_modal_queries(compressed) -> None:
    index, rec = compressed
    D_gt, _ = faiss.knn(XQ, XB, 10, metric=faiss.METRIC_INNER_PRODUCT)  # exact, on the stacked data
    _, I = index.search(XQ, 10)
    assert recall_at_k([XB], XQ, I, D_gt) >= 0.95
    assert rec["recall_at_10"] >= 0.95 and rec["params"] == search_params(index)  # tuned values are applied
    assert rec["p50_ms"] > 0 and rec["p99_ms"] >= rec["p50_ms"]


def test_tiny_memory_budget_picks_compressed_codes_that_fit(compressed, tmp_path: Path) -> None:
    index, rec = compressed
    assert any(code in rec["key"] for code in ("SQ8", "PQ")), rec["key"]
    write_faiss(index, tmp_path / "x.faiss")
    assert rec["bytes"] == (tmp_path / "x.faiss").stat().st_size <= 4 << 20
    skipped = {r["name"]: r["reason"] for r in rec["candidates"] if r.get("reason")}
    assert {"flat", "ivf-flat", "hnsw"} <= set(skipped) and all("memory" in skipped[n] for n in ("flat", "hnsw"))
    assert rec["candidates"][-1]["name"] == rec["name"]  # stops at the first that passes: later ones never built
    json.dumps(rec)


def test_memory_formulas_match_written_sizes(compressed) -> None:
    """The estimate decides what is built; it must be close to the written size of the chosen index."""
    _, rec = compressed
    assert abs(rec["estimated_bytes"] - rec["bytes"]) < 0.05 * rec["bytes"]


def test_small_n_picks_flat() -> None:
    index, rec = choose_index([XB[:1500]], XQ[:50], IndexBudget(max_memory=None, max_query_ms=None))
    assert rec["key"] == "Flat" and rec["recall_at_10"] == 1.0 and index.ntotal == 1500


def test_impossible_budget_names_the_budget() -> None:
    with pytest.raises(BudgetError, match=r"index\.max_memory=1\.0K.*flat: over memory budget"):
        choose_index(BLOCKS, XQ, IndexBudget(max_memory=1024, max_query_ms=None))


def test_streamed_ground_truth_equals_flat_on_stacked_data() -> None:
    xb = RNG.standard_normal((70_000, 16), dtype=np.float32)  # more than one ADD_BATCH, uneven blocks
    xq = RNG.standard_normal((30, 16), dtype=np.float32)
    D, I = exact_knn([xb[:5], xb[5:40_000], xb[40_000:]], xq, 10)
    flat = faiss.IndexFlatIP(16)
    flat.add(xb)
    D_ref, I_ref = flat.search(xq, 10)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5)


def test_budget_from_config_parses_sizes_and_refuses_bad_ones() -> None:
    assert IndexBudget.from_config(IndexConfig(max_memory="512M")).max_memory == 512 << 20
    assert IndexBudget.from_config(IndexConfig(max_memory="1048576", max_query_ms=None)).max_query_ms is None
    assert load_config({"index": {"factory": "auto"}}).index.max_memory == "4G"  # auto needs nothing else
    with pytest.raises(ConfigError, match="index.max_memory.*'4 lots'"):
        load_config({"index": {"factory": "auto", "max_memory": "4 lots"}})


def test_candidate_registry_shapes() -> None:
    assert [c.name for c in ordered()][0] == "flat" and len(CANDIDATES.names()) >= 6
    assert nlist(1_000_000, 100_000) == 2048 and nlist(20_000, 20_000) == 512  # 4*sqrt(n), <= ntrain/39
    assert pq_m(800, 4) == 200 and pq_m(30, 4) == 6
    with pytest.raises(ValueError, match="unknown index candidate 'nope'; known: flat"):
        CANDIDATES.get("nope")


def _index_dir(path: Path, auto: dict | None) -> Path:
    """An index directory as a build writes it, minus the models: manifest.json and both FAISS files."""
    path.mkdir()
    for modality, n in (("image", 300), ("text", 600)):
        write_faiss(build_faiss(XB[:n], "Flat"), path / f"{modality}.faiss")
    faiss_rec = FaissRecord("auto" if auto else "Flat",
                            auto={m: read_record(AutoChoice, rec, "test") for m, rec in (auto or {}).items()})
    manifest = Manifest(
        encoders={IMAGE: EncoderInfo("efficientnet-lite0", "image", 1280, "x"), TEXT: EncoderInfo("minilm", "text", 384, "x")},
        anchors=AnchorRecord("ab" * 32, 80, [IMAGE, SpaceKey.text("en")], strategy="random"),
        projector=ProjectorConfig(), faiss=faiss_rec, counts=Counts(items=300, image=300, text=600),
        package_version="0.test")
    (path / MANIFEST).write_text(manifest.to_json())
    return path


def test_info_prints_the_auto_choice(tmp_path: Path, capsys, compressed) -> None:
    """The build records one choice per modality under manifest.faiss.auto; ``relspace info`` shows them."""
    rec = compressed[1]
    out = _index_dir(tmp_path / "idx", {"image": rec, "text": rec})
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for field in ("minilm", "anchors    80", "600 caption vectors", f"auto image: {rec['key']}", "recall@10",
                  "p99", "over memory budget", "nprobe=", "max_memory 4.0 MiB"):
        assert field in text, field
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["auto"]["text"]["key"] == rec["key"] and info["faiss"]["factory"] == "auto"
    assert info["faiss_file_bytes"]["image"] > 0


def test_info_without_auto_and_on_a_non_index(tmp_path: Path, capsys) -> None:
    assert main(["info", str(_index_dir(tmp_path / "idx", None))]) == 0
    assert "\nauto " not in capsys.readouterr().out
    assert main(["info", str(tmp_path)]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err


def test_search_parameters_read_as_words_in_logs() -> None:
    """``auto chose Flat for text: {}`` printed a raw dict; an exact index has no parameters to mention."""
    from pipeline.ann.auto import describe_params

    assert describe_params({}) == ""
    assert describe_params({"nprobe": 8, "efSearch": 64}) == " (nprobe=8, efSearch=64)"
