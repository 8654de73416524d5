"""Anchor policies at equal count: the aligned selector, its pool protocol, agreement-weighted ridge coding,
and anchors whose text side averages several captions (issue 12, part 2)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError, ProjectorConfig, load_config
from pipeline.core.spaces import IMAGE, TEXT
from pipeline.evaluate import Embeddings, anchor_split, gallery_mask
from pipeline.evaluate.protocol import pool_split
from pipeline.space.agreement import anchor_weights, cross_space_agreement
from pipeline.space.anchors import select_anchors
from pipeline.space.fit import AnchorVectors, fit_projectors
from pipeline.space.relative import RelativeProjector

N, MISALIGNED, LATENT = 400, 100, 8


def planted_pairs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image and text vectors of one latent through two unrelated maps, except for some items whose caption
    describes another latent: (image, text, the misaligned items)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((N, LATENT))
    bad = rng.choice(N, MISALIGNED, replace=False)
    zt = z.copy()
    zt[bad] = rng.standard_normal((MISALIGNED, LATENT))
    image = z @ rng.standard_normal((LATENT, 32)) + 0.1 * rng.standard_normal((N, 32))
    text = zt @ rng.standard_normal((LATENT, 24)) + 0.1 * rng.standard_normal((N, 24))
    return image.astype(np.float32), text.astype(np.float32), bad


def test_agreement_separates_planted_pairs() -> None:
    image, text, bad = planted_pairs()
    score = cross_space_agreement(image, text, np.random.default_rng(0))
    good = np.setdiff1d(np.arange(N), bad)
    assert score[good].mean() > 0.5 and abs(score[bad].mean()) < 0.1
    assert np.quantile(score[good], 0.05) > np.quantile(score[bad], 0.9)


def test_aligned_selector_prefers_aligned_pairs() -> None:
    image, text, bad = planted_pairs()
    idx = select_anchors(N, 200, strategy="aligned", seed=0, spaces=(image, text))
    assert len(idx) == 200 and np.isin(idx, bad).sum() <= 5  # random would take about 50 misaligned ones
    assert np.isin(select_anchors(N, 200, strategy="random", seed=0), bad).sum() > 25


def test_aligned_stratified_keeps_coverage_and_alignment() -> None:
    """A tight cluster that both spaces agree on draws plain ``aligned`` into it; the stratified variant
    takes about its share, and still avoids misaligned pairs."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((N, LATENT))
    z[:150] = 3 * rng.standard_normal(LATENT) + 0.3 * rng.standard_normal((150, LATENT))
    image = z @ rng.standard_normal((LATENT, 32)) + 0.5 * rng.standard_normal((N, 32))
    text = z @ rng.standard_normal((LATENT, 24)) + 0.5 * rng.standard_normal((N, 24))
    share = {s: np.mean(select_anchors(N, 100, strategy=s, seed=0, spaces=(image, text)) < 150)
             for s in ("aligned", "aligned-stratified")}
    assert share["aligned"] > 0.8 and share["aligned-stratified"] < 0.5  # the cluster is 150 / 400 of the items
    image, text, bad = planted_pairs()
    idx = select_anchors(N, 200, strategy="aligned-stratified", seed=0, spaces=(image, text))
    assert len(np.unique(idx)) == 200 and np.isin(idx, bad).sum() <= 15  # random: about 50


def test_aligned_selector_needs_both_spaces() -> None:
    image, _, _ = planted_pairs()
    with pytest.raises(ValueError, match=r"'aligned' needs item image and text vectors apart \(spaces=\)"):
        select_anchors(N, 10, strategy="aligned", features=image)


def synthetic_embeddings(n: int = 60) -> Embeddings:
    """Items with one caption each, and a second caption for every third item."""
    rng = np.random.default_rng(1)
    items = np.sort(np.concatenate([np.arange(n), np.arange(0, n, 3)]))
    caps = rng.standard_normal((len(items), 12)).astype(np.float32)
    image = rng.standard_normal((n, 10)).astype(np.float32)
    text = np.stack([caps[items == i].mean(axis=0) for i in range(n)])
    return Embeddings(text, image, [f"item{i}" for i in range(n)], caps, items)


def test_pool_split_scores_every_strategy_on_the_complement_of_the_pool() -> None:
    emb = synthetic_embeddings()
    galleries = {}
    for strategy in ("random", "aligned", "kmeans"):
        sub, idx = pool_split(emb, strategy, 12, 40, seed=3)
        np.testing.assert_array_equal(idx, np.arange(12))
        gallery = [sub.ids[i] for i in np.flatnonzero(gallery_mask(len(sub.ids), idx))]
        galleries[strategy] = gallery
        assert len(gallery) == 20 and not set(gallery) & {sub.ids[i] for i in idx}
        # rows travel with their item: vectors and every caption of the kept items
        rows = [emb.ids.index(i) for i in sub.ids]
        np.testing.assert_array_equal(sub.image, emb.image[rows])
        caps, items = sub.caption_rows()
        for new, old in enumerate(rows):
            np.testing.assert_array_equal(caps[items == new], emb.captions[emb.caption_items == old])
    assert galleries["random"] == galleries["aligned"] == galleries["kmeans"]  # one gallery for every strategy
    assert pool_split(emb, "random", 12, 40, seed=4)[0].ids[12:] != galleries["random"]  # the pool is seeded


def test_pool_split_refuses_a_pool_without_room() -> None:
    with pytest.raises(ValueError, match="pool of 60 items must hold the 12 anchors and leave a gallery"):
        pool_split(synthetic_embeddings(), "random", 12, 60, seed=0)


def test_eval_split_refuses_a_paired_selector() -> None:
    cfg = load_config({"anchors": {"strategy": "aligned", "count": 10}})
    with pytest.raises(ValueError, match="would see the gallery; evaluate it with pool_split"):
        anchor_split(synthetic_embeddings(), cfg, 10, 0)


# -- agreement-weighted ridge coding ---------------------------------------------------------------------------

WEIGHTED = ProjectorConfig(anchor_weights="agreement")


def test_anchor_weights_follow_agreement_and_are_shared_by_both_sides() -> None:
    image, text, bad = planted_pairs()
    w = anchor_weights(text, image, WEIGHTED)
    assert w is not None and w.shape == (N,) and (w > 0).all()
    assert w[bad].mean() < 0.5 * np.delete(w, bad).mean()
    assert anchor_weights(text, image, ProjectorConfig()) is None
    fitted = fit_projectors({TEXT: AnchorVectors(text), IMAGE: AnchorVectors(image)}, WEIGHTED, total=N,
                            pair=(TEXT, IMAGE))
    for p, a in ((fitted[TEXT], text), (fitted[IMAGE], image)):
        np.testing.assert_array_equal(p.coder, RelativeProjector(WEIGHTED).fit(a, weights=w).coder)


def test_weighting_shrinks_a_low_weight_anchor() -> None:
    rng = np.random.default_rng(2)
    anchors, items = rng.standard_normal((50, 16)), rng.standard_normal((300, 16))
    w = np.ones(50)
    w[0] = 0.05
    share = {}
    for name, weights in (("uniform", np.ones(50)), ("low", w)):
        r = RelativeProjector(WEIGHTED).fit(anchors, weights=weights).transform(items)
        share[name] = float(np.mean(r[:, 0] ** 2))  # rows are unit vectors: anchor 0's share of each
        coder = RelativeProjector(WEIGHTED).fit(anchors, weights=weights).coder
        np.testing.assert_allclose(coder, coder.T, atol=1e-6)
    assert share["low"] < 0.5 * share["uniform"]
    # uniform weights are exactly the unweighted coder
    np.testing.assert_allclose(RelativeProjector(WEIGHTED).fit(anchors, weights=np.full(50, 0.3)).transform(items),
                               RelativeProjector().fit(anchors).transform(items), atol=1e-5)


def test_weighted_sides_stay_comparable() -> None:
    """Text as a rotated, rescaled copy of the image space: with shared weights both sides give one vector."""
    rng = np.random.default_rng(3)
    ai, xi = rng.standard_normal((40, 12)), rng.standard_normal((30, 12))
    rot = np.linalg.qr(rng.standard_normal((12, 12)))[0] * 3.0
    w = np.linspace(0.1, 1.0, 40)  # anything shared; agreement of a rotated copy would be all ones
    pt = RelativeProjector(WEIGHTED).fit(ai @ rot, weights=w)
    pi = RelativeProjector(WEIGHTED).fit(ai, weights=w)
    np.testing.assert_allclose(pt.transform(xi @ rot), pi.transform(xi), atol=1e-4)
    assert np.mean(np.sum(pt.transform(xi @ rot) * pi.transform(xi), axis=1)) > 0.999


def test_weighting_refuses_a_one_sided_fit_and_bad_weights() -> None:
    a = np.random.default_rng(4).standard_normal((20, 8))
    with pytest.raises(ValueError, match="from both modalities' anchors: set projector.ridge, and fit with pipeline.space.fit.fit_projectors"):
        RelativeProjector(WEIGHTED).fit(a)
    with pytest.raises(ValueError, match="anchor weights given, but projector.anchor_weights is 'none'"):
        RelativeProjector().fit(a, weights=np.ones(20))
    with pytest.raises(ValueError, match="20 positive finite numbers"):
        RelativeProjector(WEIGHTED).fit(a, weights=np.r_[np.ones(19), -1.0])
    with pytest.raises(ConfigError, match="'projector.anchor_weights' must be one of 'none', 'agreement'"):
        load_config({"projector": {"anchor_weights": "density"}})


# -- several captions per anchor, averaged ---------------------------------------------------------------------


def _experiment(name: str = "anchors") -> object:
    path = Path(__file__).resolve().parents[2] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # loads the bundled MiniLM: ~25 s on a loaded 2-core machine
def test_anchor_captions_average_into_the_text_side_only() -> None:
    from pipeline.encoders import make_encoder

    cfg = load_config({"text_encoder": "minilm"})
    enc = make_encoder(cfg, "text")
    primary = ["dog face", "red apple", "rocket"]
    caps = enc.encode(primary)
    emb = Embeddings(caps.copy(), np.zeros((3, 4), np.float32), ["a", "b", "c"], caps.copy(), np.arange(3))
    out = _experiment().with_anchor_captions(emb, cfg, {"a": ["puppy", "dog"], "c": []})
    expected = np.mean(enc.encode(["dog face", "puppy", "dog"]), axis=0)
    np.testing.assert_allclose(out.text[0], expected, atol=1e-5)
    np.testing.assert_allclose(out.text[1:], caps[1:], atol=1e-6)  # no extra caption: unchanged
    q, owners = out.caption_rows()  # queries stay the primary captions
    np.testing.assert_array_equal(q, caps)
    np.testing.assert_array_equal(owners, np.arange(3))
    with pytest.raises(ValueError, match="ids not in the data, e.g. 'zz'"):
        _experiment().with_anchor_captions(emb, cfg, {"zz": ["x"]})


def test_openmoji_aliases_are_new_captions_of_the_given_items() -> None:
    from pipeline.data.openmoji import emoji_entries

    entries = emoji_entries(["en"])
    ids = {e["id"] for e in entries[::2]}  # every other emoji: the others must not appear
    caption = {e["id"]: e["caption"].casefold() for e in entries}
    extra = _experiment("openmoji_aliases").alias_captions(ids)
    assert len(extra) > 100 and set(extra) <= ids
    for item_id, caps in extra.items():
        folded = [c.casefold() for c in caps]
        assert caps and caption[item_id] not in folded and len(set(folded)) == len(folded)
