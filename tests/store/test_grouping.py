"""One hit per item for a caption search over every language: the grouping rule, the search that feeds it, and
the CLI's text and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import Retriever
from pipeline.ann.faiss_index import search_faiss
from pipeline.cli import main
from pipeline.store.grouping import one_per_item
from pipeline.store.items import Hit


def _hit(item: str, score: float, lang: str) -> Hit:
    return Hit(item, score, "text", f"{item} in {lang}", lang, {}, {lang: f"{item} in {lang}"})


def test_the_rule_keeps_each_items_best_caption_and_gathers_its_languages() -> None:
    hits = [_hit("a", 0.9, "en"), _hit("a", 0.8, "it"), _hit("b", 0.7, "en"), _hit("a", 0.6, "en"),
            _hit("c", 0.5, "de"), _hit("b", 0.4, "de")]
    grouped = one_per_item(hits, 2)
    assert [(h.id, h.score, h.lang, h.caption) for h in grouped] == [("a", 0.9, "en", "a in en"),
                                                                     ("b", 0.7, "en", "b in en")]
    assert grouped[0].captions == {"en": "a in en", "it": "a in it"} and grouped[0].langs == ["en", "it"]
    assert grouped[1].captions == {"en": "b in en", "de": "b in de"}  # found after the list was full
    assert hits[0].captions == {"en": "a in en"}  # the input hits are left as they were


@pytest.fixture(scope="module")
def queries(small_retriever: Retriever) -> list[bytes]:
    ids = small_retriever.items["image"].column("id").to_pylist()
    return [small_retriever.thumbnail(i) for i in ids[::40]]


@pytest.mark.parametrize("k", [1, 5, 100])
def test_image_to_text_gives_k_distinct_items_at_their_best_captions_score(
    small_retriever: Retriever, queries: list[bytes], k: int
) -> None:
    text = small_retriever.items["text"]
    ids, langs = text.column("id").to_pylist(), text.column("lang").to_pylist()
    for png in queries:
        hits = small_retriever.search(image=png, k=k)
        assert len(hits) == k  # 160 items: k=100 needs a deeper search than k per language
        assert len({h.id for h in hits}) == k
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        # against every caption's score: each hit is its item's best caption, and its languages are those matched
        D, I = search_faiss(small_retriever.indexes["text"], small_retriever.embed(image=png), len(ids))
        best: dict[str, float] = {}
        for score, row in zip(D[0], I[0]):
            best.setdefault(ids[row], float(score))
        for h in hits:
            assert h.score == pytest.approx(best[h.id], abs=1e-6)
            assert h.langs[0] == h.lang and set(h.langs) <= {langs[r] for r in range(len(ids)) if ids[r] == h.id}
        assert [h.score for h in hits] == pytest.approx(sorted(best.values(), reverse=True)[:k], abs=1e-6)


def test_a_result_language_keeps_one_hit_per_caption(small_retriever: Retriever, queries: list[bytes]) -> None:
    png = queries[0]
    hits = small_retriever.search(image=png, k=8, result_lang="es")
    keep = small_retriever.tables.in_lang("es")
    D, I = search_faiss(small_retriever.indexes["text"], small_retriever.embed(image=png), 8, keep=keep)
    assert [h.score for h in hits] == pytest.approx(D[0].tolist(), abs=1e-6)
    rows = small_retriever.items["text"].take(I[0]).to_pylist()
    assert [(h.id, h.caption, h.lang) for h in hits] == [(r["id"], r["caption"], "es") for r in rows]
    assert all(h.captions == {"es": h.caption} for h in hits)


def test_the_cli_shows_an_item_once_with_its_languages(
    small_index: Path, small_retriever: Retriever, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    item_id = small_retriever.items["image"].column("id")[0].as_py()
    (tmp_path / "q.png").write_bytes(small_retriever.thumbnail(item_id))
    assert main(["-q", "search", str(small_index), "--image", str(tmp_path / "q.png"), "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len({h["id"] for h in hits}) == 3 and all(h["lang"] == next(iter(h["captions"])) for h in hits)
    assert main(["-q", "search", str(small_index), "--image", str(tmp_path / "q.png"), "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    both = [h for h in hits if len(h["captions"]) == 2]
    assert both, "the item's own image matches its captions in both languages"
    assert any(f"[{', '.join(both[0]['captions'])}]" in line and both[0]["id"] in line for line in lines)
