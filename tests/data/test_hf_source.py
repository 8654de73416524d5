"""The hf source on datasets the tests build themselves; several captions per image; missing translations."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import Retriever
from pipeline.config import load_config
from pipeline.data import load_data

datasets = pytest.importorskip("datasets")

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "pink", "brown", "grey", "cyan",
           "navy", "olive", "teal", "maroon"]
SHAPES = ["square", "circle"]


def png(colour: str, shape: str) -> bytes:
    img = Image.new("RGB", (48, 48), "white")
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    (draw.rectangle if shape == "square" else draw.ellipse)((6, 6, 42, 42), fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def records(n: int = 24) -> list[dict]:
    """n items, each with a list of captions (1 to 3), a Spanish caption missing for every fifth, a label."""
    out = []
    for i in range(n):
        colour, shape = COLOURS[i % len(COLOURS)], SHAPES[i % 2]
        caps = [f"a {colour} {shape}", f"{shape} painted {colour}", f"one {colour} {shape} on white"][: 1 + i % 3]
        out.append({"uid": f"u{i:02d}", "img": {"bytes": png(colour, shape), "path": None}, "sentences": caps,
                    "es": None if i % 5 == 0 else f"un {shape} {colour}", "shape": i % 2})
    return out


def hf_dataset(n: int = 24):
    features = datasets.Features({"uid": datasets.Value("string"), "img": datasets.Image(),
                                  "sentences": datasets.Sequence(datasets.Value("string")),
                                  "es": datasets.Value("string"),
                                  "shape": datasets.ClassLabel(names=SHAPES)})
    return datasets.Dataset.from_list(records(n), features=features)


def hf_config(path: Path | str, tmp_path: Path, **data: object) -> dict:
    return {"name": "hf", "data": {"source": "hf", "path": str(path), "image_column": "img",
                                   "caption_columns": {"en": "sentences", "es": "es"}, "languages": ["en", "es"],
                                   "id_column": "uid", "label_column": "shape", "cache_dir": str(tmp_path / "cache"),
                                   **data},
            "anchors": {"count": 8}, "index": {"thumbnails": 0}}


def test_save_to_disk_directory(tmp_path: Path) -> None:
    hf_dataset().save_to_disk(str(tmp_path / "ds"))
    ds = load_data(load_config(hf_config(tmp_path / "ds", tmp_path)).data)
    assert ds["id"][:2] == ["u00", "u01"] and ds["label"][:2] == ["square", "circle"]
    assert ds[2]["captions"]["en"] == ["a blue square", "square painted blue", "one blue square on white"]
    assert ds[0]["captions"]["es"] in (None, []) and ds[1]["captions"]["es"] == ["un circle green"]
    assert ds[0]["caption"] == "a red square"


def test_datasetdict_split_is_chosen(tmp_path: Path) -> None:
    datasets.DatasetDict({"train": hf_dataset(6), "test": hf_dataset(10)}).save_to_disk(str(tmp_path / "dd"))
    assert len(load_data(load_config(hf_config(tmp_path / "dd", tmp_path, split="test")).data)) == 10
    with pytest.raises(ValueError, match="no split 'val'"):
        load_data(load_config(hf_config(tmp_path / "dd", tmp_path, split="val")).data)


def test_parquet_with_an_image_feature(tmp_path: Path) -> None:
    hf_dataset().to_parquet(str(tmp_path / "data.parquet"))
    ds = load_data(load_config(hf_config(tmp_path / "data.parquet", tmp_path)).data)
    assert len(ds) == 24 and isinstance(ds[0]["image"]["bytes"], bytes)


def test_imagefolder_with_metadata(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    root.mkdir()
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "text", "name"])
        for i, rec in enumerate(records(10)):
            (root / f"{i}.png").write_bytes(rec["img"]["bytes"])
            writer.writerow([f"{i}.png", rec["sentences"][0], rec["uid"]])
    cfg = {"data": {"source": "hf", "path": str(root), "caption_column": "text", "id_column": "name",
                    "cache_dir": str(tmp_path / "cache")}}
    ds = load_data(load_config(cfg).data)
    assert ds["id"][0] == "u00" and ds[0]["captions"]["en"] == ["a red square"]


def test_unknown_columns_are_named(tmp_path: Path) -> None:
    hf_dataset(4).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match=r"no column 'photo'.*\['uid', 'img'"):
        load_data(load_config(hf_config(tmp_path / "ds", tmp_path, image_column="photo")).data)


def test_hub_name_without_network_fails_at_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="no local directory or data file"):
        load_data(load_config(hf_config("someone/flickr30k-like", tmp_path)).data)


@pytest.fixture(scope="module")
def hf_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hf")
    hf_dataset().save_to_disk(str(tmp / "ds"))
    out = tmp / "idx"
    Retriever.build(load_config(hf_config(tmp / "ds", tmp)), out)
    return out


def test_every_caption_is_a_text_row(hf_index: Path) -> None:
    r = Retriever.load(hf_index)
    n_en = sum(len(rec["sentences"]) for rec in records())
    n_es = sum(rec["es"] is not None for rec in records())
    assert r.manifest.counts.text_langs == {"en": n_en, "es": n_es}
    assert r.indexes["text"].ntotal == n_en + n_es == r.items["text"].num_rows
    rows = r.items["text"].to_pylist()
    assert [x["caption"] for x in rows if x["id"] == "u02" and x["lang"] == "en"] == [
        "a blue square", "square painted blue", "one blue square on white"]
    assert not [x for x in rows if x["id"] == "u00" and x["lang"] == "es"]  # missing translation: no row


def test_missing_translations_leave_anchors_out_of_that_language(hf_index: Path) -> None:
    m = json.loads((hf_index / "manifest.json").read_text())
    anchors = Retriever.load(hf_index)
    from pipeline.space.anchors import AnchorSet

    a = AnchorSet.load(hf_index / "anchors.parquet")
    with_es = sum(bool(c) for c in a.captions["es"])
    assert m["anchors"]["per_language"] == {"en": 8, "es": with_es} and m["anchors"]["caption_pooling"] == "mean"
    hits = anchors.search(text="un square red", lang="es", k=5)
    assert len(hits) == 5 and all(h.modality == "image" for h in hits)
    es_hits = anchors.search(image=png("red", "square"), result_lang="es", k=30)
    assert {h.lang for h in es_hits} == {"es"} and "u00" not in {h.id for h in es_hits}


def test_ranks_by_owner_match_a_brute_force_reference() -> None:
    from pipeline.evaluate.metrics import ranks_of_owner

    rng = np.random.default_rng(3)
    xq, xb = rng.standard_normal((40, 6)), rng.standard_normal((25, 6))
    owner_q, owner_b = rng.integers(0, 10, 40), rng.integers(0, 10, 25)
    owner_b[:10] = np.arange(10)  # every owner has a row
    xb[20] = xb[0]  # an exact tie between rows of different owners
    expected = []
    for q in range(40):
        scores = xb @ xq[q]
        best = max(scores[b] for b in range(25) if owner_b[b] == owner_q[q])
        expected.append(sum(1 for b in range(25) if owner_b[b] != owner_q[q] and scores[b] >= best - 1e-6))
    np.testing.assert_array_equal(ranks_of_owner(xq, xb, owner_q, owner_b), expected)


def test_eval_counts_every_caption_as_a_query(tmp_path: Path) -> None:
    """t2i: each caption finds its image; i2t: an image is found by any of its captions (brute force)."""
    from pipeline.evaluate import evaluate_split
    from pipeline.evaluate.protocol import Embeddings, text_queries

    rng = np.random.default_rng(0)
    n, d = 30, 8
    image = rng.standard_normal((n, d))
    caption_items = np.repeat(np.arange(n), 1 + np.arange(n) % 3)
    captions = image[caption_items] + 0.5 * rng.standard_normal((len(caption_items), d))
    text = np.stack([captions[caption_items == i].mean(axis=0) for i in range(n)])
    emb = Embeddings(text, image, [str(i) for i in range(n)], captions, caption_items)
    cfg = load_config({"anchors": {"count": 10}, "eval": {"baselines": []}})
    idx = np.arange(10)
    scores = evaluate_split(emb, idx, ["relspace"], cfg, 0, ["t2i", "i2t"])
    t2i, i2t = scores.ranks["relspace"]["t2i"], scores.ranks["relspace"]["i2t"]
    assert len(t2i) == text_queries(emb, idx) == int((caption_items >= 10).sum()) and len(i2t) == n - 10

    from pipeline.evaluate.methods import fit_method

    space = fit_method("relspace", text[idx], image[idx], cfg.projector, 0)
    q, g = space.text(captions[caption_items >= 10]), space.image(image[10:])
    owners = caption_items[caption_items >= 10]
    for row in range(len(q)):
        s = g @ q[row]
        true = s[owners[row] - 10]
        assert t2i[row] == sum(1 for j in range(n - 10) if j != owners[row] - 10 and s[j] >= true - 1e-6)
    for item in range(n - 10):
        s = q @ g[item]
        best = s[owners == item + 10].max()
        assert i2t[item] == sum(1 for c in range(len(q)) if owners[c] != item + 10 and s[c] >= best - 1e-6)


@pytest.mark.slow
def test_readme_export_and_hf_example_config(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:
    """The README's export snippet writes the dataset that configs/hf-example.yaml builds from."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("\n## Real datasets")
    section = readme[start:readme.index("\n## ", start + 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)  # a checkout's root, as the README runs it: data/ and configs/ side by side
    monkeypatch.setenv("RELSPACE_CACHE", str(cache_dir))
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own code
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "hf-example.yaml"  # its data.path, ../data/openmoji-hf, is read from there
    config.write_text((Path(__file__).resolve().parents[2] / "configs" / "hf-example.yaml").read_text())
    cfg = load_config(config, **{"data.limit": 120, "anchors.count": 40, "index.thumbnails": 0})
    r = Retriever.build(cfg, tmp_path / "idx")
    assert r.languages == ["en", "es", "ja"] and r.manifest.counts.items == 120
    assert r.search(text="una cara sonriente", lang="es", k=3)


def test_eval_language_table_reports_anchors_per_language(tmp_path: Path) -> None:
    """Missing translations: fewer translated anchors and queries in that language, and no crash."""
    from pipeline.evaluate import evaluate

    hf_dataset().save_to_disk(str(tmp_path / "ds"))
    cfg = hf_config(tmp_path / "ds", tmp_path)
    cfg["eval"] = {"seeds": 1, "languages": ["en", "es"], "baselines": []}
    table = evaluate(load_config(cfg))["languages"]
    a_es, a_en = table["es"]["translated"]["anchors"], table["en"]["translated"]["anchors"]
    assert a_en == 8 and 2 <= a_es < 8 and table["es"]["english_anchors"]["anchors"] == 8
    # every Spanish caption of a non-anchor item queries: all of them less those of the anchors that have one
    assert table["es"]["translated"]["queries"] == sum(rec["es"] is not None for rec in records()) - a_es


def test_the_users_directory_is_left_unchanged(tmp_path: Path) -> None:
    """Derived files live under the relspace cache: loading (with a row limit, a select) writes nothing into a
    user's save_to_disk directory."""
    hf_dataset().save_to_disk(str(tmp_path / "ds"))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ds").rglob("*")}
    ds = load_data(load_config(hf_config(tmp_path / "ds", tmp_path, limit=20)).data)
    assert len(ds) == 20 and ds["label"][0] in SHAPES
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ds").rglob("*")} == before


def test_a_new_caption_or_label_column_reuses_the_image_embeddings(tmp_path: Path) -> None:
    """The embedding cache is keyed by the embedded column: another caption column, or a label column added,
    reads the cached image vectors (no new cache file) while the changed captions get their own."""
    from pipeline.encoders import create_encoder
    from pipeline.encoders.embed import embed_dataset

    data = hf_dataset(8).add_column("alt", [f"picture {i}" for i in range(8)])
    data.save_to_disk(str(tmp_path / "ds"))
    cache = tmp_path / "cache" / "embeddings"
    image, text = create_encoder("efficientnet-lite0", "image"), create_encoder("minilm", "text")

    def embed(**data_cfg: object) -> tuple[np.ndarray, np.ndarray]:
        cfg = hf_config(tmp_path / "ds", tmp_path, caption_columns={}, languages=["en"], **data_cfg)
        ds = load_data(load_config(cfg).data)
        return (embed_dataset(ds, image, cache=cache, show_progress=False),
                embed_dataset(ds, text, lang="en", cache=cache, show_progress=False))

    x1, t1 = embed(caption_column="sentences", label_column=None)
    assert len(list(cache.glob("*.npy"))) == 2
    x2, t2 = embed(caption_column="alt", label_column="shape")
    assert len(list(cache.glob("*.npy"))) == 3  # the new captions only: the images were not encoded again
    assert np.array_equal(x1, x2) and t1.shape != t2.shape
