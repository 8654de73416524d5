"""Shared fixtures: one small real OpenMoji index per session, built with the bundled encoders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from pipeline.config import Config, load_config

SMALL_ITEMS = 160
SMALL_ANCHORS = 80
N_A = 110  # items of the first build of the update tests; the other SMALL_ITEMS - N_A are added

# Hypothesis: "ci" (the default) is small and derandomized, so a CI run is reproducible and needs no example
# database; "nightly" (HYPOTHESIS_PROFILE=nightly) searches 40x as many examples, randomly, keeping failures.
CI_EXAMPLES = 25
settings.register_profile("ci", max_examples=CI_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("nightly", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(share: float, least: int = 3) -> int:
    """A share of the active profile's max_examples, for properties whose examples are expensive."""
    return max(least, round(settings.default.max_examples * share))


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under a directory (an index's shards included) by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session cache for rendered data and embeddings, so tests never touch the user's cache."""
    return tmp_path_factory.mktemp("relspace-cache")


@pytest.fixture(scope="session")
def small_config(cache_dir: Path) -> Config:
    """OpenMoji, a 160-item seeded sample, 80 anchors, bundled MiniLM + EfficientNet-Lite0."""
    return load_config(
        {
            "name": "small",
            "data": {"limit": SMALL_ITEMS, "cache_dir": str(cache_dir), "languages": ["en", "es"]},
            "anchors": {"count": SMALL_ANCHORS},
            "index": {"thumbnails": 64},
            "eval": {"seeds": 2},
        }
    )


@pytest.fixture(scope="session")
def small_index(small_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built index directory; treat it as read-only (copy it to modify)."""
    from pipeline import Retriever

    out = tmp_path_factory.mktemp("indexes") / "small"
    Retriever.build(small_config, out)
    return out


@pytest.fixture(scope="session")
def small_retriever(small_index: Path):
    """The loaded small index, shared: encoders load once per session."""
    from pipeline import Retriever

    return Retriever.load(small_index)


# -- the update tests' data: OpenMoji items as an image folder, and how two indexes are compared ---------------


@pytest.fixture(scope="session")
def folders(small_config, tmp_path_factory) -> dict[str, Path]:
    """OpenMoji items as an image folder with JSONL caption files: the first build's part, the addition, both."""
    from pipeline.data import load_data

    ds = load_data(small_config.data)
    root = tmp_path_factory.mktemp("folder")
    rows = []
    for item_id, image, caps in zip(ds["id"], ds["image"], ds["captions"]):
        (root / f"{item_id}.png").write_bytes(image)
        rows.append({"id": item_id, "image": f"{item_id}.png", "caption": caps["en"], "caption_es": caps["es"]})
    parts = {"a": rows[:N_A], "b": rows[N_A:], "ab": rows}
    for name, part in parts.items():
        write_jsonl(root / f"{name}.jsonl", part)
    return {name: root / f"{name}.jsonl" for name in parts}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def folder_config(small_config: Config, captions: Path, image_dir: Path | None = None, **extra) -> Config:
    """An update-test config over a JSONL caption file (images in ``image_dir``, default the file's folder)."""
    cfg = {"name": "upd", "shard_size": 40, "anchors": {"count": 60}, "index": {"thumbnails": 32},
           "data": {"source": "folder", "path": str(image_dir or captions.parent), "captions": str(captions),
                    "languages": ["en", "es"], "cache_dir": small_config.data.cache_dir}}
    cfg.update(extra)
    return load_config(cfg)


def top10(r, texts: list[str], images: list[bytes], *, scores: bool = False) -> list[list[tuple]]:
    """Top-10 of text queries over images and image queries over captions (all and Spanish only).

    With ``scores`` each hit carries its score, for comparisons that allow ties (:func:`same_ranking`).
    """
    def hit(h, *fields: str) -> tuple:
        return (*(getattr(h, f) for f in fields), *((round(h.score, 6),) if scores else ()))

    out = [[hit(h, "id") for h in r.search(text=t, k=10)] for t in texts]
    out += [[hit(h, "id", "lang", "caption") for h in r.search(image=im, k=10)] for im in images]
    out += [[hit(h, "id", "caption") for h in r.search(image=im, k=10, result_lang="es")] for im in images]
    return out


def same_ranking(mine: list[tuple], theirs: list[tuple], tol: float = 1e-5) -> bool:
    """Two top-k lists of (key..., score) agree rank by rank in score, and each key above the k-th score has
    the same score in both: tied items may come back in either order (FAISS breaks ties by internal id,
    which an update renumbers), and a tie at the k-th score may let either item in.
    """
    if len(mine) != len(theirs) or any(abs(a[-1] - b[-1]) > tol for a, b in zip(mine, theirs)):
        return False
    last = mine[-1][-1] if mine else 0.0
    above = [{a[:-1]: a[-1] for a in hits if a[-1] > last + tol} for hits in (mine, theirs)]
    return above[0].keys() == above[1].keys() and all(abs(above[0][k] - above[1][k]) <= tol for k in above[0])


def stored_rows(r, modality: str) -> tuple[list[tuple], np.ndarray]:
    """Stored rows (id, and lang and caption for text) and their relative vectors, in FAISS order."""
    from pipeline.store.shards import open_shards

    table = r.items[modality]
    cols = ["id"] if modality == "image" else ["id", "lang", "caption"]
    keys = list(zip(*(table.column(c).to_pylist() for c in cols)))
    vecs = np.vstack([np.asarray(s.vectors(modality)) for s in open_shards(r.index_dir)])
    return keys, vecs


def stored_vectors(r, modality: str) -> dict[tuple, np.ndarray]:
    """Stored relative vectors keyed by item id (and caption, for text), from the index's shards."""
    return dict(zip(*stored_rows(r, modality)))
