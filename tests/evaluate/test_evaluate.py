"""Metrics against brute force, every method on synthetic parallel spaces, and the eval report."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.evaluate import (
    Embeddings,
    evaluate,
    evaluate_split,
    format_table,
    gallery_mask,
    protocol,
    ranks_of_truth,
    retrieval_metrics,
)
from pipeline.evaluate.methods import fit_method, list_methods


def test_ranks_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((50, 6)), rng.standard_normal((50, 6))
    s = q @ g.T
    expected = [(s[i] >= s[i, i]).sum() - 1 for i in range(50)]
    np.testing.assert_array_equal(ranks_of_truth(q, g), expected)


def test_ties_count_against_the_method() -> None:
    q = np.ones((3, 2))
    assert (ranks_of_truth(q, np.ones((3, 2))) == 2).all()  # all tied: the truth ranks last


def test_metrics() -> None:
    m = retrieval_metrics(np.array([0, 1, 4, 20]), [1, 5])
    assert m == {"R@1": 0.25, "R@5": 0.75, "MRR": pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 21) / 4), "MedR": 3.5}


def synthetic(n: int = 400, seed: int = 0) -> Embeddings:
    """Two spaces that are noisy linear images of one latent: relative methods should align them."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 12))
    text = z @ rng.standard_normal((12, 20)) + 0.3 * rng.standard_normal((n, 20))
    image = np.tanh(z @ rng.standard_normal((12, 30))) + 0.3 * rng.standard_normal((n, 30))
    return Embeddings(text.astype(np.float32), image.astype(np.float32), [str(i) for i in range(n)])


@pytest.mark.parametrize("name", list_methods())
def test_every_method_maps_both_modalities_to_unit_vectors(name: str) -> None:
    e = synthetic()
    space = fit_method(name, e.text[:100], e.image[:100])
    t, i = space.text(e.text[100:]), space.image(e.image[100:])
    assert t.shape[0] == i.shape[0] == 300 and t.shape[1] == i.shape[1]
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, atol=1e-4)


def test_report_has_the_public_shape_and_beats_chance() -> None:
    cfg = load_config({"anchors": {"count": 100}, "eval": {"seeds": 2, "anchor_counts": [50, 100]}})
    rep = evaluate(cfg, emb=synthetic())
    for res in [rep, *rep["baselines"].values()]:
        for d in ("t2i", "i2t"):
            assert set(res[d]) == {"R@1", "R@5", "R@10", "MRR", "MedR"}
    assert set(rep["baselines"]) == {"chance", "cosine", "asif", "procrustes", "ridge"}
    assert rep["anchors"] == 100 and rep["gallery"] == 300 and rep["seeds"] == [0, 1]
    assert rep["t2i"]["R@10"] > 3 * rep["baselines"]["chance"]["t2i"]["R@10"]
    assert rep["baselines"]["chance"]["t2i"]["R@10"] < 0.1
    assert set(rep["curve"]) == {"50", "100"}
    assert "| relspace |" in format_table(rep)


def test_sweep_rows_follow_the_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.evaluate as ev

    emb = synthetic()
    monkeypatch.setattr(protocol, "load_embeddings", lambda cfg, *a: emb)  # synthetic spaces instead of encoders
    rows = ev.sweep({"anchors": {"count": 100}, "eval": {"seeds": 1}},
                    {"projector.power": [1.0, 2.0], "projector.ridge": [None, 1.0]})
    assert [(r["projector.power"], r["projector.ridge"]) for r in rows] == [(1.0, None), (1.0, 1.0), (2.0, None),
                                                                             (2.0, 1.0)]
    assert all(0 <= r["relspace t2i R@10"] <= 1 for r in rows)
    assert len({r["relspace t2i R@10"] for r in rows}) > 1  # the overrides really changed the projector
    assert "| projector.power |" in ev.format_rows(rows)


def test_swap_report_has_native_and_cross_space(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.evaluate as ev

    native = synthetic(seed=0)
    rng = np.random.default_rng(5)
    swapped = Embeddings(native.text @ np.linalg.qr(rng.standard_normal((20, 20)))[0], native.image, native.ids)
    monkeypatch.setattr(protocol, "load_embeddings", lambda cfg, text_encoder=None, image_encoder=None: swapped)
    rep = ev.evaluate(load_config({"anchors": {"count": 100}, "eval": {"seeds": 1, "swap_text_encoder": "other"}}),
                      emb=native)
    assert "t2i" in rep and "i2t" not in rep and "t2i" in rep["native"]
    # a rotated text space is the same relative space: identical figures, relative cosine 1
    assert rep["t2i"]["R@10"] == pytest.approx(rep["native"]["t2i"]["R@10"])
    assert rep["cross_space"]["text"]["relative"]["cosine"] == pytest.approx(1.0, abs=1e-3)
    assert rep["cross_space"]["text"]["absolute"]["cosine"] < 0.9


def test_plots_are_written(tmp_path) -> None:
    from PIL import Image

    cfg = load_config({"anchors": {"count": 100}, "eval": {"seeds": 1, "anchor_counts": [50, 100],
                                                           "plot_dir": str(tmp_path / "plots")}})
    rep = evaluate(cfg, emb=synthetic())
    assert sorted(rep["plots"]) == sorted(str(tmp_path / "plots" / n) for n in ("r10_vs_anchors.png",
                                                                                 "rank_histogram.png"))
    for path in rep["plots"]:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 200


def test_gallery_is_every_non_anchor_item() -> None:
    np.testing.assert_array_equal(gallery_mask(5, np.array([1, 3])), [True, False, True, False, True])


def test_split_returns_the_ranks_its_metrics_come_from() -> None:
    e = synthetic()
    cfg = load_config({"anchors": {"count": 100}})
    scores = evaluate_split(e, np.arange(100), ["relspace", "cosine"], cfg, 0, ["t2i"])
    assert set(scores.ranks) == {"relspace", "cosine"} and set(scores.ranks["relspace"]) == {"t2i"}
    for name, per_dir in scores.ranks.items():
        assert len(per_dir["t2i"]) == 300
        assert scores.metrics[name]["t2i"] == retrieval_metrics(per_dir["t2i"], cfg.eval.ks)


def test_swap_eval_leaves_the_callers_config_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    native = synthetic()
    monkeypatch.setattr(protocol, "load_embeddings", lambda cfg, text_encoder=None, image_encoder=None: native)
    cfg = load_config({"anchors": {"count": 100}, "eval": {"seeds": 1, "baselines": ["cosine"],
                                                           "swap_text_encoder": "other"}})
    before = copy.deepcopy(cfg.to_dict())
    rep = evaluate(cfg, emb=native)
    assert "t2i" in rep and "i2t" not in rep  # the swap did narrow the measured directions...
    assert cfg.to_dict() == before and cfg.eval.directions == ["t2i", "i2t"]  # ...in a local, not in the config


def runtime_imports(source: str, package: str = "pipeline") -> list[str]:
    """Modules a module's source imports outside ``if TYPE_CHECKING:``, function-level imports included."""
    import ast

    tree = ast.parse(source)
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = ".".join(filter(None, [package if node.level else None, node.module]))
            out += [base, *(f"{base}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def test_plots_do_not_import_evaluate() -> None:
    """plots only draws what evaluate computed: importing evaluate from it, at any level, would be a cycle."""
    from pathlib import Path

    import pipeline.evaluate.plots

    imported = runtime_imports(Path(pipeline.evaluate.plots.__file__).read_text())
    assert not [m for m in imported if m == "pipeline.evaluate" or m.startswith("pipeline.evaluate.")], imported
    # the checker itself: a function-level import counts, a TYPE_CHECKING one does not
    assert "pipeline.evaluate" in runtime_imports("def f():\n    from .evaluate import DIRECTIONS\n")
    assert "pipeline.evaluate" not in runtime_imports("if TYPE_CHECKING:\n    from .evaluate import Ranks\n")


def test_sweep_of_a_swap_reports_the_measured_direction_only(monkeypatch: pytest.MonkeyPatch) -> None:
    emb = synthetic()
    monkeypatch.setattr(protocol, "load_embeddings", lambda cfg, *a: emb)
    from pipeline.evaluate import sweep

    rows = sweep({"anchors": {"count": 100}, "eval": {"seeds": 1, "swap_text_encoder": "other"}},
                 {"projector.power": [1.0]})
    assert [k for k in rows[0] if k.startswith("relspace")] == ["relspace t2i R@1", "relspace t2i R@10"]
