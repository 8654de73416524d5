"""One hit per item: the rule that groups an item's captions into one hit, and the caption search that feeds it.

A caption search over every language finds an item once per language (🟥's en, it and de captions fill three
of three slots), so results are grouped by item: the item keeps the rank and score of its best caption, and
``Hit.captions`` lists its matched captions by language, best first. ``target="items"`` fusion will group by the
same rule.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..ann.faiss_index import search_faiss
from .items import Hit, ItemTables


def one_per_item(hits: list[Hit], k: int) -> list[Hit]:
    """The first ``k`` distinct items of ``hits`` (best first), each with its best hit's score, caption and
    language; ``captions`` gathers every language it matched in (its best caption there), best first."""
    grouped: dict[str, Hit] = {}
    for hit in hits:
        best = grouped.get(hit.id)
        if best is None:
            if len(grouped) == k:
                continue  # full: later hits only add languages to the items kept
            best = grouped[hit.id] = replace(hit, captions={})
        if hit.lang is not None and best.captions is not None:
            best.captions.setdefault(hit.lang, hit.caption or "")
    return list(grouped.values())


def search_one_per_item(index: Any, tables: ItemTables, xq: np.ndarray, k: int, languages: int) -> list[list[Hit]]:
    """The ``k`` best items for each query row of a caption search, one hit each (:func:`one_per_item`).

    FAISS returns captions, so it is asked for ``k`` per language (an item has about one caption in each); a
    query whose captions still hold fewer than ``k`` items is searched again twice as deep, up to the whole index.
    """
    out: list[list[Hit]] = []
    for row in np.atleast_2d(xq):
        depth = k * max(1, languages)
        while True:
            D, I = search_faiss(index, row[None], depth)
            hits = one_per_item(tables.hits("text", D[0], I[0]), k)
            if len(hits) >= k or depth >= index.ntotal:
                break
            depth *= 2
        out.append(hits)
    return out
