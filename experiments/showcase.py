"""The README's example queries on a built index: the top hits, and the rank of the emoji a reader expects.

    python experiments/showcase.py indexes/openmoji

A diagnostic of what a new user sees, not a benchmark: four queries say nothing about quality on average
(``relspace eval`` does). The expected emoji are the obvious answers, named here so that a reader can check them.
"""

from __future__ import annotations

import argparse
import json

from pipeline import Retriever

# query -> the emoji a reader expects at the top (OpenMoji ids)
QUERIES = {"a red apple": "1F34E", "a rocket": "1F680", "airplane": "2708-FE0F"}
IMAGE_QUERY = "docs/query.png"  # a red circle drawn with PIL; its caption is "red circle" (1F534)
IMAGE_EXPECTED = "1F534"


def rank_of(hits: list, item: str) -> int | None:
    return next((i for i, h in enumerate(hits, 1) if h.id == item), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", help="index directory, e.g. indexes/openmoji")
    ap.add_argument("--k", type=int, default=100, help="how deep to look for the expected emoji")
    args = ap.parse_args()
    r = Retriever.load(args.index)
    out = {}
    for query, expected in QUERIES.items():
        hits = r.search(text=query, k=args.k)
        out[query] = {"top5": [f"{h.id} {h.caption}" for h in hits[:5]], "expected": expected,
                      "rank": rank_of(hits, expected)}
    hits = r.search(image=IMAGE_QUERY, k=args.k, result_lang=r.caption_languages[0])
    out[IMAGE_QUERY] = {"top5": [f"{h.id} {h.caption}" for h in hits[:5]], "expected": IMAGE_EXPECTED,
                        "rank": rank_of(hits, IMAGE_EXPECTED)}
    print(json.dumps({"index": args.index, "anchors": r.manifest.anchors.strategy, "queries": out},
                     ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
