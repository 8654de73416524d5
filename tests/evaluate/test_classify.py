"""Zero-shot classification: class ranks against brute force, accuracy on synthetic spaces, the CLI on OpenMoji."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import load_config
from pipeline.data.emoji_groups import emoji_group, group_key, parse_emoji_test
from pipeline.evaluate import (
    Embeddings,
    Labels,
    align_labels,
    anchor_split,
    class_ranks,
    classify,
    evaluate,
    format_table,
    protocol,
    top_k_accuracy,
)
from pipeline.evaluate.classify import check_prompts, class_vectors, label_text

METHODS = {"relspace", "chance", "cosine", "asif", "procrustes", "ridge"}


def brute_force_rank(scores: np.ndarray, truth: np.ndarray) -> list[int]:
    """Loop by loop: the number of other classes scoring at least the true class's score."""
    out = []
    for i in range(len(scores)):
        t = scores[i, truth[i]]
        out.append(sum(1 for c in range(scores.shape[1]) if c != truth[i] and scores[i, c] >= t))
    return out


def test_class_ranks_match_brute_force_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (200, 7)).astype(np.float32)  # few distinct values: ties everywhere
    truth = rng.integers(0, 7, 200)
    np.testing.assert_array_equal(class_ranks(scores, truth), brute_force_rank(scores, truth))
    scores = rng.standard_normal((200, 7))
    np.testing.assert_array_equal(class_ranks(scores, truth), brute_force_rank(scores, truth))


def test_ties_count_against_the_method() -> None:
    ranks = class_ranks(np.ones((4, 6)), np.array([0, 1, 2, 5]))
    assert (ranks == 5).all()  # all tied: the truth ranks last
    assert top_k_accuracy(ranks) == {"top1": 0.0, "top5": 0.0}
    assert top_k_accuracy(np.array([0, 1, 4, 9])) == {"top1": 0.25, "top5": 0.75}


def test_labels_become_prompt_words_and_templates_are_checked() -> None:
    assert label_text("face-smiling") == "face smiling" and label_text(" hot_dog ") == "hot dog"
    check_prompts(["{label}", "a photo of {label}."])
    for bad in ([], ["a photo"], ["{label} {x}"], ["{"]):
        with pytest.raises(ValueError, match="eval.prompts"):
            check_prompts(bad)


def test_prompt_ensemble_is_the_mean_at_the_templates_scale() -> None:
    vecs = {"a": [2.0, 0.0], "the a": [0.0, 2.0], "b": [1.0, 1.0], "the b": [1.0, 1.0]}
    x = class_vectors(lambda texts: np.array([vecs[t] for t in texts]), ["a", "b"], ["{label}", "the {label}"])
    np.testing.assert_allclose(x[0], [np.sqrt(2), np.sqrt(2)])  # direction of the mean, norm of the templates
    np.testing.assert_allclose(x[1], [1.0, 1.0])


def test_labels_align_by_id_not_position() -> None:
    labels = Labels(["b", "a", "c"], {"label": ["x", "y", None], "n": [1, 2, 3]})
    lab, num = align_labels(labels, ["a", "b", "c"], ["label", "n"])
    assert lab.classes == ["x", "y"] and lab.y.tolist() == [1, 0, -1]  # "c" has no label
    assert num.classes == ["1", "2", "3"] and num.y.tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="no label row"):
        align_labels(labels, ["a", "d"], ["label"])
    with pytest.raises(ValueError, match="no label column 'other'"):
        align_labels(labels, ["a"], ["other"])


def clustered(n: int = 400, classes: int = 5, seed: int = 0) -> tuple[Embeddings, Labels, dict[str, np.ndarray]]:
    """Items near one of ``classes`` centres, text and image spaces identical, and each class prompt at its centre.

    Identical spaces make every relative method a perfect classifier: an image and its class prompt sit
    at the same point, so their relative vectors coincide.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, 16)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = centres[y] + 0.05 * rng.standard_normal((n, 16)).astype(np.float32)
    ids = [f"item{i}" for i in range(n)]
    labels = Labels(ids[::-1], {"label": [f"kind-{y[i]}" for i in range(n)][::-1]})  # another order: aligned by id
    return Embeddings(x, x.copy(), ids), labels, {f"kind {c}": centres[c] for c in range(classes)}


def run_synthetic(monkeypatch: pytest.MonkeyPatch, cfg: dict, emb: Embeddings, labels: Labels,
                  prompts: dict[str, np.ndarray]) -> dict:
    """``evaluate`` on synthetic embeddings and labels, with a prompt encoder that looks prompts up."""
    monkeypatch.setattr(protocol, "load_embeddings", lambda cfg, *a: emb)
    monkeypatch.setattr(classify, "load_labels", lambda cfg: labels)
    monkeypatch.setattr(classify, "prompt_encoder", lambda cfg: lambda texts: np.stack([prompts[t] for t in texts]))
    return evaluate(load_config(cfg, **{"eval.label_columns": cfg["eval"].get("label_columns", ["label"])}))


def test_perfect_method_scores_one_and_chance_one_over_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    emb, labels, prompts = clustered()
    rep = run_synthetic(monkeypatch, {"anchors": {"count": 80}, "eval": {"seeds": 2, "task": "classify"}},
                        emb, labels, prompts)
    assert rep["task"] == "classify" and rep["seeds"] == [0, 1] and rep["anchors"] == 80
    assert set(rep["baselines"]) == METHODS - {"relspace"}
    res = rep["classify"]["label"]
    assert res["classes"] == 5 and res["test_items"] == 320 and res["unlabelled"] == 0
    assert res["top1"] == 1.0 and res["top5"] == 1.0 and res["std"] == {"top1": 0.0, "top5": 0.0}
    chance = rep["baselines"]["chance"]["classify"]["label"]
    assert abs(chance["top1"] - 1 / 5) < 0.08
    assert chance["top5"] == 1.0  # five classes: every class is in the top five
    table = format_table(rep)
    assert "| relspace | 1.000 ± 0.000 | 1.000 ± 0.000 |" in table and "5 classes, 320 test items" in table
    assert "t2i" not in rep  # not the retrieval report
    json.dumps(rep)


def test_anchors_are_never_test_items(monkeypatch: pytest.MonkeyPatch) -> None:
    emb, labels, prompts = clustered(n=200)
    cfg = {"anchors": {"count": 50}, "eval": {"seeds": 2, "task": "classify"}}
    split = {seed: set(anchor_split(emb, load_config(cfg), 50, seed).tolist()) for seed in (0, 1)}
    assert split[0] != split[1]
    # label the first seed's anchors and two other items only: the test items are those two
    by_id = dict(zip(labels.ids, labels.columns["label"]))
    others = [i for i in range(200) if i not in split[0] | split[1]][:2]
    keep = {emb.ids[i] for i in split[0] | set(others)}
    partial = Labels(labels.ids, {"label": [v if i in keep else None for i, v in by_id.items()]})
    one_seed = {**cfg, "eval": {"seeds": 1, "task": "classify"}}
    res = run_synthetic(monkeypatch, one_seed, emb, partial, prompts)["classify"]["label"]
    assert res["test_items"] == 2 and res["unlabelled"] == 200 - 52
    only_anchors = Labels(labels.ids, {"label": [v if emb.ids.index(i) in split[0] else None
                                                 for i, v in by_id.items()]})
    with pytest.raises(ValueError, match="no labelled item is left once the anchors are taken out"):
        run_synthetic(monkeypatch, one_seed, emb, only_anchors, prompts)


def test_retrieval_report_is_unchanged_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    emb, labels, prompts = clustered(n=200)
    rep = run_synthetic(monkeypatch, {"anchors": {"count": 50}, "eval": {"seeds": 1}}, emb, labels, prompts)
    assert "task" not in rep and {"t2i", "i2t", "baselines", "anchors", "gallery", "seeds"} <= set(rep)


def test_emoji_test_parsing_and_keys() -> None:
    lines = ["# group: Smileys & Emotion", "# subgroup: face-smiling",
             "1F600 ; fully-qualified # 😀 E1.0 grinning face",
             "# subgroup: heart", "2764 FE0F ; fully-qualified # ❤️ E0.6 red heart",
             "2764 ; unqualified # ❤ E0.6 red heart"]
    groups = parse_emoji_test(lines)
    assert groups == {"1F600": ("Smileys & Emotion", "face-smiling"), "2764": ("Smileys & Emotion", "heart")}
    assert group_key("2764-fe0f") == "2764" and group_key("1F469-200D-2764-FE0F-200D-1F468") == "1F469-200D-2764-200D-1F468"
    assert emoji_group("1F600") == ("Smileys & Emotion", "face-smiling")  # the shipped Unicode data
    assert emoji_group("2764-FE0F") == emoji_group("2764") == ("Smileys & Emotion", "heart")


@pytest.mark.slow
def test_cli_classify_json_on_openmoji(cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipeline.cli import main

    cfg = {"data": {"limit": 200, "cache_dir": str(cache_dir), "languages": ["en", "es"]}, "anchors": {"count": 80},
           "eval": {"seeds": 1, "label_columns": ["group", "subgroup"]}}
    path = tmp_path / "classify.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["-q", "eval", str(path), "--task", "classify", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["task"] == "classify" and rep["items"] == 200 and rep["anchors"] == 80
    for res in [rep["classify"], *(b["classify"] for b in rep["baselines"].values())]:
        assert set(res) == {"group", "subgroup"}
        for col in res.values():
            assert 0 <= col["top1"] <= col["top5"] <= 1 and col["test_items"] == 120 and col["unlabelled"] == 0
    assert set(rep["baselines"]) == METHODS - {"relspace"}
    assert rep["classify"]["group"]["classes"] <= 9 < rep["classify"]["subgroup"]["classes"]
    assert main(["-q", "eval", str(path), "--task", "classify", "--labels", "group"]) == 0
    table = capsys.readouterr().out
    assert "| relspace |" in table and "group top1" in table and "subgroup" not in table.split("\n\n")[0]


def test_labels_have_one_default_and_are_checked_before_any_model_loads(tmp_path: Path, monkeypatch) -> None:
    """data.label_column is classified with or without an eval: section, and a config without labels is
    refused before an encoder loads; the report's data field names the dataset, not only its source."""
    import pipeline.evaluate.protocol
    from pipeline.config import load_config
    from pipeline.data import describe_data
    from pipeline.evaluate.classify import label_columns, load_labels
    from pipeline.evaluate.run import evaluate

    from ..data.test_hf_source import hf_config, hf_dataset

    hf_dataset(8).save_to_disk(str(tmp_path / "ds"))
    for extra in ({}, {"eval": {"seeds": 1}}):
        cfg = load_config({**hf_config(tmp_path / "ds", tmp_path), **extra})
        assert label_columns(cfg) == ["label"] and load_labels(cfg).columns["label"][:2] == ["square", "circle"]
    assert label_columns(load_config({})) == ["group", "subgroup"]
    assert describe_data(cfg.data) == f"hf:{tmp_path / 'ds'}"

    def no_models(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the labels were checked")

    monkeypatch.setattr(pipeline.evaluate.protocol, "load_embeddings", no_models)
    unlabelled = load_config(hf_config(tmp_path / "ds", tmp_path, label_column=None), **{"eval.task": "classify"})
    with pytest.raises(ValueError, match=r"no label column \['label'\].*data.label_column"):
        evaluate(unlabelled)


def test_tied_scores_are_warned_about(caplog) -> None:
    """ASIF with 10 anchors reported top-5 = 0.000 without a word: its classes all scored alike."""
    import logging

    from pipeline.evaluate.classify import class_ranks, warn_ties

    flat = np.zeros((4, 6))  # every class the same score: the pessimistic rank is the last
    with caplog.at_level(logging.WARNING, logger="pipeline.evaluate.classify"):
        assert warn_ties(flat, np.array([0, 1, 2, 3]), "asif on 'group'") == 1.0
    assert "asif on 'group'" in caplog.text and "ties" in caplog.text
    assert (class_ranks(flat, np.array([0, 1, 2, 3])) == 5).all()
    caplog.clear()
    distinct = np.arange(24, dtype=float).reshape(4, 6)
    with caplog.at_level(logging.WARNING, logger="pipeline.evaluate.classify"):
        assert warn_ties(distinct, np.array([0, 1, 2, 3]), "relspace") == 0.0
    assert not caplog.text
