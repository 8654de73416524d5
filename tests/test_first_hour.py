"""Regression tests for the defects a new user hit in the first hour (each failed before its fix)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.cli import main

from .conftest import tree_bytes

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "pink", "brown", "grey", "cyan"]


def make_folder(root: Path, n: int = 12, extra_langs: tuple[str, ...] = ("es",)) -> Path:
    """A user's folder: n small PNGs and a CSV with a caption per language, an id and a metadata column."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour = COLOURS[i % len(COLOURS)]
        Image.new("RGB", (48, 40), colour).save(root / f"img{i:03d}.png")
        row = {"image": f"img{i:03d}.png", "id": f"item{i:03d}", "caption": f"a {colour} square number {i}",
               "source": "test"}
        row.update({f"caption_{lang}": f"{lang} {colour} {i}" for lang in extra_langs})
        rows.append(row)
    with open(root / "captions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_folder_fingerprint_is_the_same_in_every_process(tmp_path: Path) -> None:
    """Defect 1: set order made the source fingerprint, and so the resume and cache keys, differ per process."""
    folder = make_folder(tmp_path / "imgs", extra_langs=("es", "fr", "de"))
    code = (
        "from pipeline.config import DataConfig; from pipeline.data import load_data; "
        "from pipeline.data.fingerprint import dataset_key; "
        f"ds = load_data(DataConfig(source='folder', path={str(folder)!r}, captions='captions.csv', "
        f"languages=['en', 'es', 'fr', 'de'], cache_dir={str(tmp_path / 'cache')!r})); print(dataset_key(ds))"
    )
    prints = {run_python(code, PYTHONHASHSEED=str(seed)).stdout.strip() for seed in range(4)}
    assert len(prints) == 1 and "" not in prints, prints


@pytest.mark.slow
def test_second_process_reuses_the_embedding_cache(tmp_path: Path) -> None:
    """Defect 1, end to end: a rebuild in a new process reads the cached vectors instead of re-embedding."""
    folder = make_folder(tmp_path / "imgs", extra_langs=("es", "fr", "de"))
    cache = tmp_path / "cache"
    code = (
        "import logging; logging.basicConfig(level=logging.INFO); "
        "from pipeline.config import DataConfig; from pipeline.data import load_data; "
        "from pipeline.encoders.embed import embed_dataset; from pipeline.encoders import create_encoder; "
        f"ds = load_data(DataConfig(source='folder', path={str(folder)!r}, captions='captions.csv', "
        f"languages=['en', 'es', 'fr', 'de'], cache_dir={str(cache)!r})); "
        f"embed_dataset(ds, create_encoder('minilm', 'text'), lang='en', cache={str(cache / 'embeddings')!r})"
    )
    first = run_python(code, PYTHONHASHSEED="1")
    assert first.returncode == 0, first.stderr
    second = run_python(code, PYTHONHASHSEED="2")
    assert second.returncode == 0, second.stderr
    assert "reusing cached" in second.stderr
    assert len(list((cache / "embeddings").glob("*.npy"))) == 1


def test_unknown_encoder_fails_at_once_in_one_line(small_index: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Defect 6: an unknown model name offline hung for 82 s and ended in an OSError traceback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["-q", "reanchor", str(small_index), "--text-encoder", "st:no-such-model", "--out",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no local sentence-transformers model 'no-such-model'" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_unknown_encoder_without_network_names_the_cause(monkeypatch) -> None:
    """Without HF_HUB_OFFLINE, the hub is probed once (briefly) instead of retried for a minute and a half."""
    from pipeline.core.hub import hub_reachable
    from pipeline.encoders import create_encoder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    if hub_reachable():
        pytest.skip("this machine reaches the hub; the no-network path cannot be shown here")
    with pytest.raises(ValueError, match="no network"):
        create_encoder("st:no-such-model", "text")


def test_unexpected_errors_are_one_line_unless_verbose(tmp_path: Path, capsys) -> None:
    """Defect 6: every CLI error is one line with exit code 2; the traceback only under --verbose."""
    bad = tmp_path / "idx"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    assert main(["-q", "search", str(bad), "--text", "a dog"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("relspace: error: ") and "manifest.json is not valid JSON" in err and err.count("\n") == 1
    assert main(["-v", "search", str(bad), "--text", "a dog"]) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.slow  # a subprocess or repeated builds: the full suite's
def test_quiet_shows_no_progress_bars(small_index: Path, tmp_path: Path) -> None:
    """Defect 10: -q still showed transformers' "Loading weights" and 🤗 datasets' bars."""
    done = subprocess.run([sys.executable, "-m", "pipeline", "-q", "search", str(small_index), "--text", "a dog",
                           "-k", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Loading weights" not in done.stderr and "it/s" not in done.stderr, done.stderr


def test_index_directory_follows_the_umask(small_config, tmp_path: Path) -> None:
    """Defect 10: index directories were created 0700 (mkdtemp's mode), unlike any other file."""
    from pipeline.store.files import atomic_directory

    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "idx") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "idx").stat().st_mode & 0o777 == 0o755


def folder_config(folder: Path, tmp_path: Path, **data: object) -> dict:
    return {"name": "mine", "data": {"source": "folder", "path": str(folder), "captions": "captions.csv",
                                     "languages": ["en"], "cache_dir": str(tmp_path / "cache"), **data},
            "anchors": {"count": 4}, "index": {"thumbnails": 0}}


def test_non_utf8_caption_file_names_file_offset_and_encoding(tmp_path: Path) -> None:
    """Defect 4: a Latin-1 caption file ended in DatasetGenerationError, its cause buried in the log."""
    from pipeline.config import load_config
    from pipeline.data import load_data

    folder = make_folder(tmp_path / "imgs", extra_langs=())
    text = (folder / "captions.csv").read_text().replace("a red square number 0", "a café square")
    (folder / "captions.csv").write_bytes(text.encode("latin-1"))
    cfg = load_config(folder_config(folder, tmp_path))
    offset = text.encode("latin-1").index(b"\xe9")
    with pytest.raises(ValueError, match=rf"captions.csv: byte 0xe9 at offset {offset} \(line 2\) is not valid "
                                         r"utf-8.*set data.encoding"):
        load_data(cfg.data)
    cfg = load_config(folder_config(folder, tmp_path, encoding="latin-1"))
    ds = load_data(cfg.data)
    assert ds[0]["caption"] == "a café square"


def test_too_many_anchors_fail_before_any_model_loads(tmp_path: Path, capsys, monkeypatch) -> None:
    """Defect 5: 500 anchors on a 300-image folder failed only after 51 s of embedding."""
    import yaml

    import pipeline.indexing.build

    folder = make_folder(tmp_path / "imgs", n=12, extra_langs=())
    cfg = folder_config(folder, tmp_path)
    cfg["anchors"]["count"] = 50
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))

    def no_models(*args: object, **kwargs: object) -> None:
        raise AssertionError("an encoder was loaded before the anchor count was checked")

    monkeypatch.setattr(pipeline.indexing.build, "load_encoders", no_models)
    assert main(["-q", "build", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err
    assert "cannot choose 50 anchors from 12 items" in err and "anchors.count" in err and not (tmp_path / "idx").exists()


def test_shipped_folder_config_suits_a_small_folder() -> None:
    """Defect 5: configs/my-images.yaml asked for 500 anchors, more than a 300-image folder has."""
    from pipeline.config import load_config

    assert load_config(ROOT / "configs" / "my-images.yaml").anchors.count <= 300 // 2


def test_kmeans_anchors_on_a_small_set_print_no_faiss_warning(capfd) -> None:
    """Defect 5: FAISS printed "please provide at least 5850 training points" for 150 anchors."""
    import numpy as np

    from pipeline.space.anchors import select_anchors

    feats = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    assert len(select_anchors(300, 150, strategy="kmeans", features=feats)) == 150
    assert "training points" not in capfd.readouterr().err


def break_two_images(folder: Path) -> None:
    """One image missing, one truncated mid-file: the two bad rows of a user's folder."""
    (folder / "img003.png").unlink()
    data = (folder / "img007.png").read_bytes()
    (folder / "img007.png").write_bytes(data[: len(data) // 2])


def test_bad_rows_are_found_before_any_model_loads_and_skipped(tmp_path: Path, capsys, monkeypatch) -> None:
    """Defect 3: a bad row failed the build only after every earlier image was embedded."""
    import pyarrow.parquet as pq

    from pipeline import Retriever
    from pipeline.config import load_config

    folder = make_folder(tmp_path / "imgs", n=12, extra_langs=())
    break_two_images(folder)
    cfg = load_config(folder_config(folder, tmp_path))
    assert cfg.data.on_error == "skip"
    r = Retriever.build(cfg, tmp_path / "idx")
    assert r.manifest.counts.items == 10 and r.manifest.counts.skipped == 2
    skipped = pq.read_table(tmp_path / "idx" / "skipped.parquet").to_pylist()
    assert [row["id"] for row in skipped] == ["item003", "item007"]
    assert "image file not found" in skipped[0]["reason"] and "cannot decode image" in skipped[1]["reason"]
    assert {h.id for h in r.search(text="a red square", k=10)}.isdisjoint({"item003", "item007"})


def test_on_error_fail_names_the_row_in_one_line_and_keeps_the_old_index(tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    """Defect 3: fail mode stops at the first bad row, before any encoder loads, with one line naming it."""
    import yaml

    import pipeline.indexing.build

    folder = make_folder(tmp_path / "imgs", n=12, extra_langs=())
    cfg = folder_config(folder, tmp_path, on_error="fail")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["-q", "build", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "idx")]) == 0
    before = tree_bytes(tmp_path / "idx")
    break_two_images(folder)

    def no_models(*args: object, **kwargs: object) -> None:
        raise AssertionError("an encoder was loaded before the rows were checked")

    monkeypatch.setattr(pipeline.indexing.build, "load_encoders", no_models)
    assert main(["-q", "build", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "item 'item003': image file not found" in err and "on_error" in err
    assert tree_bytes(tmp_path / "idx") == before


def test_an_encode_error_is_the_items_one_line_not_a_worker_traceback(tmp_path: Path) -> None:
    """Defect 3: errors inside DataLoader workers arrived as "Caught ImageLoadError in DataLoader worker"."""
    from pipeline.data.images import ImageLoadError
    from pipeline.encoders import create_encoder

    good = (make_folder(tmp_path / "imgs", n=1, extra_langs=()) / "img000.png").read_bytes()
    items = [good] * 70 + [good[: len(good) // 2]]  # enough for DataLoader workers; the last one truncated
    ids = [f"x{i}" for i in range(len(items))]
    enc = create_encoder("efficientnet-lite0", "image")
    enc.num_workers = 1
    with pytest.raises(ImageLoadError) as info:
        enc.encode(items, ids=ids)
    message = str(info.value)
    assert message.startswith("item 'x70': cannot decode image") and "\n" not in message
    assert "DataLoader worker" not in message


@pytest.mark.parametrize("override, match", [({"text_encoder": "bogus:thing"}, "unknown encoder 'bogus:thing'"),
                                             ({"image_encoder": "minilm"}, "embeds text, not image"),
                                             ({"anchors": {"strategy": "psychic"}}, "unknown anchor strategy")])
def test_config_errors_are_refused_before_any_data_is_read(tmp_path: Path, monkeypatch, override, match) -> None:
    import pipeline.indexing.build
    from pipeline import Retriever
    from pipeline.config import load_config

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read before the config was checked")

    monkeypatch.setattr(pipeline.indexing.build, "load_data", no_data)
    with pytest.raises(ValueError, match=match):
        Retriever.build(load_config(override), tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("built, added", [("csv", "jsonl"), ("jsonl", "csv")])
def test_add_across_caption_formats(tmp_path: Path, built: str, added: str) -> None:
    """Item tables have one schema whatever the caption format: a CSV-built index takes JSONL items (the
    format of docs/new-items), and the reverse; it failed with "large_string vs string"."""
    import json

    import pyarrow.parquet as pq

    from pipeline import Retriever
    from pipeline.config import load_config

    folder = make_folder(tmp_path / "imgs", n=14, extra_langs=())
    rows = list(csv.DictReader(open(folder / "captions.csv")))
    for name, part in (("built", rows[:12]), ("added", rows[12:])):
        fmt = built if name == "built" else added
        if fmt == "csv":
            with open(folder / f"{name}.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(part[0]))
                writer.writeheader()
                writer.writerows(part)
        else:
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    r = Retriever.build(load_config(folder_config(folder, tmp_path, captions=f"built.{built}")), tmp_path / "idx")
    r.add(load_config(folder_config(folder, tmp_path, captions=f"added.{added}")))
    assert r.manifest.counts.items == 14
    table = pq.read_table(tmp_path / "idx" / "image_items.parquet")
    assert str(table.schema.field("id").type) == "string" and table.column("source").to_pylist() == ["test"] * 14
    assert table.column("id").to_pylist()[12:] == ["item012", "item013"]


def test_engine_ray_without_ray_fails_before_anything_loads(tmp_path: Path) -> None:
    """``--engine ray`` without Ray failed after the data, models and anchors loaded, leaving a .partial directory."""
    cache, out = tmp_path / "cache", tmp_path / "indexes" / "x"
    cfg = tmp_path / "x.yaml"
    cfg.write_text(f"name: x\ndata:\n  limit: 20\n  cache_dir: {cache}\nanchors:\n  count: 10\n")
    code = ("import sys; sys.modules['ray'] = None; from pipeline.cli import main; "  # as if Ray were not installed
            f"sys.exit(main(['-q', 'build', {str(cfg)!r}, '--out', {str(out)!r}, '--engine', 'ray']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "relspace: error: the ray engine needs Ray: pip install 'relspace[ray]'"), proc.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no .x.partial, no index
    assert not cache.exists() or not any(cache.rglob("*.parquet"))  # the data was never read


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("captions.csv", "", "is empty: it needs a header line and one row per item"),
    ("captions.csv", "image,caption\n", "has a header but no rows"),
    ("captions.jsonl", "\n", "is empty: it needs one row per item"),
    ("captions.jsonl", '{"image": "0.png", "caption": ', "could not be read as json"),
])
def test_a_caption_file_without_rows_is_named(tmp_path: Path, capsys, name: str, text: str, expected: str) -> None:
    """A 0-byte file gave DatasetGenerationError, a header alone 'Instruction "train" corresponds to no data!'."""
    import yaml

    folder = make_folder(tmp_path / "imgs", extra_langs=())
    (folder / name).write_text(text)
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(folder_config(folder, tmp_path, captions=name)))
    assert main(["-q", "build", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder / name) in err and expected in err, err
