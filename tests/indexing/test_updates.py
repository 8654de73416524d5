"""Incremental add and remove: an updated index answers exactly as a fresh build of its final items would."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipeline import Retriever
from pipeline.cli import main
from pipeline.store.shards import ShardError
from pipeline.store.verify import verify_index

from ..conftest import N_A, SMALL_ITEMS, folder_config, stored_vectors, top10


@pytest.fixture(scope="module")
def updated(small_config, folders, tmp_path_factory) -> tuple[Retriever, Retriever]:
    """(index of part a, then b added; fresh build of a + b on the first index's anchor file)."""
    base = tmp_path_factory.mktemp("upd")
    r = Retriever.build(folder_config(small_config, folders["a"]), base / "idx")
    r.add(folder_config(small_config, folders["b"]))
    fresh = Retriever.build(folder_config(small_config, folders["ab"], anchors={"path": str(base / "idx" / "anchors.parquet")}),
                            base / "fresh")
    return r, fresh


def test_add_equals_a_fresh_build_of_the_union(updated, folders) -> None:
    r, fresh = updated
    assert r.manifest.counts.items == fresh.manifest.counts.items == SMALL_ITEMS
    assert r.manifest.counts.text == fresh.manifest.counts.text
    for m in ("image", "text"):
        mine, theirs = stored_vectors(r, m), stored_vectors(fresh, m)
        assert mine.keys() == theirs.keys()
        assert max(float(np.abs(mine[k] - theirs[k]).max()) for k in mine) < 1e-5
    rows = [json.loads(line) for line in folders["ab"].read_text().splitlines()]
    pick = rows[::8]  # items of both parts
    texts = [row["caption"] for row in pick]
    images = [(folders["ab"].parent / row["image"]).read_bytes() for row in pick]
    assert top10(r, texts, images) == top10(fresh, texts, images)
    assert r.manifest.history[-1].added == SMALL_ITEMS - N_A
    added = rows[-1]["id"]
    assert r.item(added) is not None and r.thumbnail(added) is not None


def test_adding_an_existing_id_is_refused_unless_upsert(updated, small_config, folders, tmp_path) -> None:
    r, _ = updated
    copy = tmp_path / "idx"
    shutil.copytree(r.index_dir, copy)
    mine = Retriever.load(copy)
    before = {p.name: p.stat().st_mtime_ns for p in copy.iterdir()}
    first_b = json.loads(folders["b"].read_text().splitlines()[0])["id"]
    with pytest.raises(ValueError, match=f"item '{first_b}' is already in .*--upsert"):
        mine.add(folder_config(small_config, folders["b"]))
    assert {p.name: p.stat().st_mtime_ns for p in copy.iterdir()} == before  # nothing written
    mine.add(folder_config(small_config, folders["b"]), upsert=True)
    assert mine.manifest.counts.items == SMALL_ITEMS and mine.manifest.history[-1].upserted == SMALL_ITEMS - N_A
    assert top10(mine, ["a dog"], []) == top10(r, ["a dog"], [])


def test_remove_hides_items_in_every_space(updated, folders, tmp_path) -> None:
    r, _ = updated
    copy = tmp_path / "idx"
    shutil.copytree(r.index_dir, copy)
    mine = Retriever.load(copy)
    rows = [json.loads(line) for line in folders["ab"].read_text().splitlines()]
    gone = [rows[3], rows[N_A + 5]]  # one built, one added
    ids = {row["id"] for row in gone}
    assert main(["remove", str(copy), "--ids", *ids]) == 0
    mine = Retriever.load(copy)
    assert mine.manifest.counts.items == SMALL_ITEMS - 2
    assert verify_index(r.index_dir).ok and verify_index(copy).ok  # an add and a remove record their checksums
    for row in gone:  # its own caption and its own image cannot find it, in any space or language
        image = (folders["ab"].parent / row["image"]).read_bytes()
        queries = [mine.embed(text=row["caption"]), mine.embed(text=row["caption_es"], lang="es"),
                   mine.embed(image=image)]
        hits = [h for xq in queries for target in ("image", "text") for h in mine.search_vectors(xq, 10**4,
                                                                                                 target=target)[0]]
        hits += mine.search_vectors(queries[2], 10**4, target="text", result_lang="es")[0]
        assert len(hits) == 3 * (158 + 158) + 158  # captions in every language come one hit per item
        assert not ids & {h.id for h in hits}
        assert mine.item(row["id"]) is None and mine.thumbnail(row["id"]) is None
    assert not ids & set(mine.items["text"].column("id").to_pylist())
    with pytest.raises(ValueError, match="cannot remove 'no-such-id'"):
        mine.remove(["no-such-id"])


def test_a_damaged_shard_is_named_and_never_merged(updated, tmp_path) -> None:
    r, _ = updated
    copy = tmp_path / "idx"
    shutil.copytree(r.index_dir, copy)
    mine = Retriever.load(copy)  # before the damage, which a load now refuses by the file's size
    victim = copy / "shards" / "000001" / "image.npy"
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(ShardError, match=r"shards/000001: image\.npy is damaged"):
        mine.remove([r.items["image"].column("id")[0].as_py()])



def test_shard_item_tables_have_one_schema_whatever_the_source(tmp_path) -> None:
    """A CSV source gives string (and int32) columns, a JSONL one large_string (and int64): written shards
    share one schema, so the merge of an add from another format works."""
    import pyarrow as pa

    from pipeline.store.shards import ShardPayload, write_shard

    def shard(number: int, text: pa.DataType, ints: pa.DataType):
        items = pa.table({"id": pa.array([f"x{number}"], text), "caption": pa.array(["c"], text),
                          "n": pa.array([1], ints), "tags": pa.array([["a"]], pa.large_list(text))})
        texts = pa.table({"id": pa.array([f"x{number}"], text), "lang": pa.array(["en"], text),
                          "caption": pa.array(["c"], text)})
        payload = ShardPayload({"image": np.zeros((1, 2), np.float32), "text": np.zeros((1, 2), np.float32)},
                               {"image": items, "text": texts})
        return write_shard(tmp_path, number, payload, rows=(0, 1), source="s", anchors="a")

    a, b = shard(0, pa.string(), pa.int32()), shard(1, pa.large_string(), pa.int64())
    for m in ("image", "text"):
        assert a.items(m).schema == b.items(m).schema
    assert pa.concat_tables([a.items("image"), b.items("image")]).column("tags").type == pa.list_(pa.string())


def test_a_duplicate_id_is_refused_before_any_encoder_runs(updated, small_config, folders, monkeypatch,
                                                           caplog) -> None:
    """A duplicate-id add failed only after both models loaded; and every add warned that its (unused)
    anchors differ from the index's."""
    import logging

    import pipeline.indexing.update

    r, _ = updated

    def no_projection(*args: object, **kwargs: object) -> None:
        raise AssertionError("the items were about to be embedded before the ids were checked")

    monkeypatch.setattr(pipeline.indexing.update.Projection, "of", no_projection)
    first_b = json.loads(folders["b"].read_text().splitlines()[0])["id"]
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match=f"item '{first_b}' is already in"):
        r.add(folder_config(small_config, folders["b"]))
    assert "anchors" not in caplog.text
