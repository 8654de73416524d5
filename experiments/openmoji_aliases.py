"""Write the `emoji` package's alternative names of the OpenMoji items as extra anchor captions (JSONL).

Each line is ``{"id": ..., "captions": [...]}``, the input of ``experiments/anchors.py --anchor-captions``,
for the items of the configured data. An alias that reads the same as the item's primary caption, ignoring
case, or as another alias is left out. Only English has aliases in the `emoji` package.

    python experiments/openmoji_aliases.py configs/openmoji.yaml /tmp/openmoji-aliases.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.config import load_config
from pipeline.data import load_data
from pipeline.data.openmoji import emoji_entries, name_caption


def alias_captions(ids: set[str]) -> dict[str, list[str]]:
    """Item id -> its aliases as captions, new ones only (see the module docstring), for the items ``ids``."""
    import emoji

    out: dict[str, list[str]] = {}
    for entry in (e for e in emoji_entries(["en"]) if e["id"] in ids):
        seen = {entry["caption"].casefold()}
        extra = []
        for alias in emoji.EMOJI_DATA[entry["char"]].get("alias", []):
            caption = name_caption(alias)
            if caption and caption.casefold() not in seen:
                seen.add(caption.casefold())
                extra.append(caption)
        if extra:
            out[entry["id"]] = extra
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", help="YAML config of an openmoji data source")
    ap.add_argument("out", type=Path, help="JSONL file to write")
    args = ap.parse_args(argv)
    rows = alias_captions(set(load_data(load_config(args.config).data)["id"]))
    args.out.write_text("".join(json.dumps({"id": k, "captions": v}, ensure_ascii=False) + "\n"
                                for k, v in rows.items()))
    print(f"{len(rows)} items with {sum(map(len, rows.values()))} extra captions -> {args.out}")


if __name__ == "__main__":
    main()
