"""Property tests (Hypothesis): invariances of the projector, index recall, updates, config and eval ranks.

Arrays are drawn from a Hypothesis-chosen seed, shape and options rather than element by element: the
properties are about the maths at any size, and seeded numpy data keeps each example cheap. Profiles
("ci", "nightly") are in conftest.py.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import types
import typing
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.ann.auto import IndexBudget, evaluate_candidates
from pipeline.ann.candidates import CANDIDATES, SMALL_N
from pipeline.ann.faiss_index import apply_search_params, build_faiss
from pipeline.config import (
    AnchorConfig,
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    IndexConfig,
    ProjectorConfig,
    load_config,
)
from pipeline.core.spaces import SpaceKey
from pipeline.core.specs import Member
from pipeline.evaluate import metrics
from pipeline.evaluate.classify import class_ranks
from pipeline.space import relative
from pipeline.space.projectors import load_projectors, save_projectors
from pipeline.space.relative import RelativeProjector

from .conftest import examples, folder_config, same_ranking, stored_vectors, top10, write_jsonl

# -- the projector --------------------------------------------------------------------------------------------

options = st.builds(
    ProjectorConfig,
    center=st.booleans(),
    column_norm=st.booleans(),
    topk=st.none() | st.integers(1, 12),
    power=st.sampled_from([1.0, 0.5, 2.0, 3.0]) | st.floats(0.25, 4.0),
    # small ridges make (K + ridge I) ill-conditioned, amplifying float32 noise far past any tolerance
    ridge=st.none() | st.floats(0.05, 4.0),
)


@st.composite
def spaces(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(anchors, items): seeded Gaussian absolute embeddings, offset so that centring matters."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m, d, n = draw(st.integers(3, 24)), draw(st.integers(2, 16)), draw(st.integers(1, 40))
    offset = rng.standard_normal(d) * draw(st.sampled_from([0.0, 1.0, 5.0]))
    return ((rng.standard_normal((m, d)) + offset).astype(np.float32),
            (rng.standard_normal((n, d)) + offset).astype(np.float32))


def _fit(o: ProjectorConfig, anchors: np.ndarray) -> RelativeProjector:
    return RelativeProjector(o).fit(anchors)


@given(o=options, data=spaces(), chunk=st.integers(1, 7))
def test_chunked_transform_equals_one_pass(o: ProjectorConfig, data: tuple, chunk: int) -> None:
    anchors, x = data
    p = _fit(o, anchors)
    whole = p.transform(x)
    with mock.patch.object(relative, "CHUNK", chunk):
        parts = p.transform(x)
    np.testing.assert_allclose(parts, whole, atol=1e-6)


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))  # Haar-distributed


# Every projector option is a function of cosines between (centred) vectors, and the anchor mean moves with
# the space, so every option is invariant; none needs to be excluded. Top-k is only invariant away from
# ties, which seeded Gaussian data (no duplicate anchors) keeps out. Centring off is still rotation and
# scale invariant (not translation invariant, which is not claimed).
@given(o=options, data=spaces(), seed=st.integers(0, 2**32 - 1),
       scale=st.floats(1e-3, 1e3), flip=st.booleans())
def test_rotating_or_rescaling_the_absolute_space_keeps_relative_vectors(
    o: ProjectorConfig, data: tuple, seed: int, scale: float, flip: bool
) -> None:
    anchors, x = data
    q = _orthogonal(np.random.default_rng(seed), anchors.shape[1]).astype(np.float32)
    s = np.float32(-scale if flip else scale)
    base = _fit(o, anchors).transform(x)
    rotated = _fit(o, anchors @ q).transform(x @ q)
    rescaled = _fit(o, anchors * s).transform(x * s)
    # topk on near-equal similarities may keep a different anchor: skip examples with a near-tie at the cut
    if o.topk and o.topk < len(anchors):
        plain = _fit(dataclasses.replace(o, topk=None, power=1.0, ridge=None), anchors)
        raw = plain._kernel(plain.cosine(np.vstack([x, anchors])))  # anchors too: ridge's kernel is top-k'd
        cut = -np.sort(-raw, axis=1)[:, o.topk - 1 : o.topk + 1]
        assume(np.all(np.abs(cut[:, 0] - cut[:, 1]) > 1e-4))
    np.testing.assert_allclose(rotated, base, atol=2e-4)
    np.testing.assert_allclose(rescaled, base, atol=2e-4)


@given(o=options, data=spaces(), missing=st.integers(0, 2))
def test_save_then_load_gives_identical_projectors(o: ProjectorConfig, data: tuple, missing: int) -> None:
    anchors, x = data
    total = len(anchors)
    present = np.arange(missing, total)  # the first ``missing`` anchors lack this language
    assume(len(present) >= 2)
    projectors = {SpaceKey("image"): RelativeProjector(o).fit(anchors),
                  SpaceKey.text("es"): RelativeProjector(o).fit(anchors[present], positions=present, total=total)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "projectors.safetensors"
        save_projectors(path, projectors)
        loaded = load_projectors(path, list(projectors), o)
    for key, p in projectors.items():
        q = loaded[key]
        assert q.total == p.total and q.num_anchors == p.num_anchors
        mine, theirs = p.state(str(key)), q.state(str(key))
        assert mine.keys() == theirs.keys()
        for name in mine:
            np.testing.assert_array_equal(theirs[name], mine[name])
        np.testing.assert_array_equal(q.transform(x), p.transform(x))


# -- FAISS indexes: what auto may pick, against exact search ---------------------------------------------------


def tie_aware_recall(xb: np.ndarray, xq: np.ndarray, ids: np.ndarray, k: int, tol: float = 1e-5) -> float:
    """Share of returned ids whose exact score reaches the exact k-th score (a tie with it is a hit)."""
    exact = xq.astype(np.float64) @ xb.T.astype(np.float64)
    kth = -np.sort(-exact, axis=1)[:, k - 1 : k]
    got = np.take_along_axis(exact, np.where(ids >= 0, ids, 0), axis=1)
    return float(((got >= kth - tol) & (ids >= 0)).mean())


@st.composite
def galleries(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(database, queries): L2-normalised clustered vectors, some rows duplicated so that scores tie."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, dim = SMALL_N + draw(st.integers(0, 200)), draw(st.sampled_from([16, 24, 32]))
    centres = rng.standard_normal((draw(st.integers(1, 64)), dim))
    xb = centres[rng.integers(len(centres), size=n)] + rng.standard_normal((n, dim)) * draw(st.floats(0.1, 1.0))
    dup = rng.choice(n, size=int(n * draw(st.floats(0.0, 0.2))), replace=False)
    xb[dup] = xb[rng.integers(n, size=len(dup))]
    xq = xb[rng.integers(n, size=40)] + rng.standard_normal((40, dim)) * 0.3  # queries near, not on, the data
    return relative.l2_normalize(xb), relative.l2_normalize(xq)


@pytest.fixture
def one_faiss_thread():
    """HNSW built on several threads differs run to run; one thread makes a rebuild identical (and is fair on 2 cores)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@settings(max_examples=examples(0.16), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=galleries())
@pytest.mark.slow
def test_every_index_auto_may_pick_meets_the_recall_target(data: tuple, one_faiss_thread: None) -> None:
    """Each candidate as auto tunes it: its recorded recall is the true (tie-aware) recall@10 against exact
    search, an accepted one reaches ``index.recall``, and the exact-capable ones are never refused for recall."""
    xb, xq = data
    budget = IndexBudget(max_memory=None, max_query_ms=None, recall=IndexConfig().recall)
    rows = evaluate_candidates([xb], xq, budget)
    assert [r["name"] for r in rows] == sorted(CANDIDATES, key=lambda n: CANDIDATES.get(n).rank)
    for row in rows:
        index = apply_search_params(build_faiss(xb, row["key"]), row["params"])
        _, ids = index.search(xq, budget.k)
        recall = tie_aware_recall(xb, xq, ids, budget.k)
        assert recall == pytest.approx(row["recall_at_10"], abs=1e-3), row
        assert (not row.get("reason")) == (recall >= budget.recall), row
        if row["name"] in ("flat", "ivf-flat", "hnsw"):  # exact at their largest setting: never refused
            assert not row.get("reason"), row


# -- updates: any sequence of add / remove / upsert equals a fresh build of the final items --------------------


# A smaller universe than test_updates.py's: every example ends in a fresh build, whose cost is its items.
BASE_ITEMS, UNIVERSE, BASE_ANCHORS = 40, 56, 24


@pytest.fixture(scope="module")
def base_index(small_config, folders, tmp_path_factory) -> Path:
    """An index of the first BASE_ITEMS items (read-only: examples copy it)."""
    from pipeline import Retriever

    rows = [json.loads(line) for line in folders["ab"].read_text().splitlines()][:BASE_ITEMS]
    root = tmp_path_factory.mktemp("props-upd")
    out = root / "base"
    Retriever.build(folder_config(small_config, write_jsonl(root / "base.jsonl", rows), folders["ab"].parent,
                                  anchors={"count": BASE_ANCHORS}), out)
    return out


@st.composite
def update_steps(draw: st.DrawFn, n_items: int) -> list[tuple[str, list[int], bool]]:
    """Operations on item positions of ``folders["ab"]``: ("add" | "remove" | "upsert", rows, caption changed)."""
    ops = st.sampled_from(["add", "remove", "upsert"])
    rows = st.lists(st.integers(0, n_items - 1), min_size=1, max_size=6, unique=True)
    return draw(st.lists(st.tuples(ops, rows, st.booleans()), min_size=1, max_size=4))


@settings(max_examples=examples(0.08, least=2), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.slow  # a subprocess or repeated builds: the full suite's
def test_any_update_sequence_equals_a_fresh_build(data: st.DataObject, small_config, folders, base_index,
                                                   tmp_path_factory) -> None:
    from pipeline import Retriever

    rows = [json.loads(line) for line in folders["ab"].read_text().splitlines()][:UNIVERSE]
    images = folders["ab"].parent
    work = tmp_path_factory.mktemp("props-example")
    shutil.copytree(base_index, work / "idx")
    r = Retriever.load(work / "idx")
    held = {row["id"]: row for row in rows[:BASE_ITEMS]}  # id -> row, as the index holds it
    for step, (op, picks, changed) in enumerate(data.draw(update_steps(len(rows)))):
        # each step picks among the rows it can act on (absent ones to add, held ones to remove), so none is idle
        pool = {"add": [row for row in rows if row["id"] not in held], "remove": list(held.values()),
                "upsert": rows}[op]
        chosen = list({row["id"]: dict(row) for row in (pool[i % len(pool)] for i in picks)}.values()) if pool else []
        if changed:  # an upsert or re-add that really replaces something: another caption
            for row in chosen:
                row["caption"], row["caption_es"] = row["caption_es"], row["caption"]
        if not chosen or (op == "remove" and len(chosen) == len(held)):
            continue  # nothing to act on, or removing every item: refused by design (see test_updates.py)
        if op == "remove":
            r.remove([row["id"] for row in chosen])
            for row in chosen:
                del held[row["id"]]
            continue
        r.add(folder_config(small_config, write_jsonl(work / f"{step}.jsonl", chosen), images), upsert=op == "upsert")
        held.update({row["id"]: row for row in chosen})
    anchors = str(base_index / "anchors.parquet")
    fresh = Retriever.build(folder_config(small_config, write_jsonl(work / "final.jsonl", list(held.values())),
                                          images, anchors={"path": anchors}), work / "fresh")
    for m in ("image", "text"):
        mine, theirs = stored_vectors(r, m), stored_vectors(fresh, m)
        assert mine.keys() == theirs.keys()
        assert max(float(np.abs(mine[k] - theirs[k]).max()) for k in mine) < 1e-5
    probe = list(held.values())[:: max(1, len(held) // 4)]
    texts = [row["caption"] for row in probe]
    queries = [(images / row["image"]).read_bytes() for row in probe]
    for mine, theirs in zip(top10(r, texts, queries, scores=True), top10(fresh, texts, queries, scores=True)):
        assert same_ranking(mine, theirs), (mine, theirs)


# -- config: YAML round trip and unknown keys ---------------------------------------------------------------

SECTIONS = {"data": DataConfig, "anchors": AnchorConfig, "projector": ProjectorConfig, "index": IndexConfig,
            "eval": EvalConfig}
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
# fields whose type allows more than the class accepts: the values it does accept
CONSTRAINED: dict[str, st.SearchStrategy] = {
    "index.max_memory": st.none() | st.integers(1, 2**40) | st.sampled_from(["512M", "4G", "1.5G", "64K", "1T"]),
    "index.max_query_ms": st.none() | st.floats(1e-3, 1e6),
    "index.recall": st.floats(1e-6, 1.0),
    "index.tune_queries": st.integers(1, 10**6),
}
# encoder fields: a spec, or an ensemble of distinct specs with positive weights (see pipeline/core/specs.py)
_spec = names.map(str.strip).filter(lambda s: s and "+" not in s and "*" not in s)
_member = _spec | st.builds(Member, _spec, st.floats(1e-3, 1e3))
_ensemble = _spec | st.lists(_member, min_size=1, max_size=3, unique_by=lambda m: getattr(m, "spec", m))
CONSTRAINED |= {"text_encoder": _ensemble, "image_encoder": _ensemble, "text_encoders": st.dictionaries(names, _ensemble),
                "eval.swap_text_encoder": st.none() | _ensemble, "eval.swap_image_encoder": st.none() | _ensemble}


def _values(tp: Any, key: str) -> st.SearchStrategy:
    """Any value of type ``tp`` that the config accepts for ``key``."""
    if key in CONSTRAINED:
        return CONSTRAINED[key]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(st.none() if a is type(None) else _values(a, key) for a in args))
    if dataclasses.is_dataclass(tp):
        return _instances(tp, key + ".")
    if origin is list:
        return st.lists(_values(args[0], key), max_size=3)
    if origin is dict:
        return st.dictionaries(names, _values(args[1], key), max_size=3)
    return {bool: st.booleans(), int: st.integers(-(2**63), 2**63 - 1), str: names,
            float: st.floats(allow_nan=False)}[tp]


def _instances(cls: type, prefix: str = "") -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: _values(hints[f.name], prefix + f.name) for f in dataclasses.fields(cls)})


@given(cfg=_instances(Config))
def test_config_to_yaml_and_back_is_identical(cfg: Config) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        cfg.save(path)
        assert load_config(path) == cfg


@given(section=st.sampled_from([None, *SECTIONS]), key=names.filter(bool))
def test_an_unknown_key_is_refused_by_name(section: str | None, key: str) -> None:
    known = {f.name for f in dataclasses.fields(SECTIONS[section] if section else Config)}
    assume(key not in known)
    data = Config().to_dict()
    (data[section] if section else data)[key] = 1
    dotted = f"{section}.{key}" if section else key
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        with pytest.raises(ConfigError) as err:
            load_config(path)
    assert repr(dotted) in str(err.value) and str(path) in str(err.value)


# -- eval: ranks against brute force, ties counted against the method ----------------------------------------


@st.composite
def scored(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(xq, xb, owner_q, owner_b): small-integer vectors, so that scores tie exactly and often."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_items, dim = draw(st.integers(1, 12)), draw(st.integers(1, 3))
    owner_b = np.concatenate([np.arange(n_items), rng.integers(n_items, size=draw(st.integers(0, 12)))])
    owner_q = rng.integers(n_items, size=draw(st.integers(1, 20)))
    values = draw(st.sampled_from([(-1, 2), (0, 2), (-2, 3)]))
    xq = rng.integers(*values, size=(len(owner_q), dim)).astype(np.float32)
    xb = rng.integers(*values, size=(len(owner_b), dim)).astype(np.float32)
    return xq, xb, owner_q, owner_b


def reference_rank(scores: np.ndarray, true: np.ndarray) -> int:
    """Rows of other items scoring at least the best true row's score, counted one by one."""
    best = max(s for s, t in zip(scores, true) if t)
    return sum(1 for s, t in zip(scores, true) if not t and s >= best)


@given(data=scored(), chunk=st.integers(1, 5))
def test_ranks_equal_brute_force_with_ties_against_the_method(data: tuple, chunk: int) -> None:
    xq, xb, owner_q, owner_b = data
    scores = xq.astype(np.float64) @ xb.T
    want = [reference_rank(scores[i], owner_b == owner_q[i]) for i in range(len(xq))]
    assert metrics.ranks_of_owner(xq, xb, owner_q, owner_b).tolist() == want
    with mock.patch.object(metrics, "RANK_CHUNK", chunk):  # chunking the queries changes nothing
        assert metrics.ranks_of_owner(xq, xb, owner_q, owner_b).tolist() == want
    n = min(len(xq), len(xb))
    aligned = [reference_rank(scores[i, :n], np.arange(n) == i) for i in range(n)]
    assert metrics.ranks_of_truth(xq[:n], xb[:n]).tolist() == aligned
    truth = owner_q  # zero-shot classification, the gallery rows as classes: each query's true class
    want_cls = [sum(1 for j, s in enumerate(scores[i]) if j != truth[i] and s >= scores[i, truth[i]])
                for i in range(len(xq))]
    assert class_ranks(scores, truth).tolist() == want_cls
