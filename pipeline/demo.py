"""``relspace demo``: build the offline OpenMoji index once, then show a few searches in both directions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config, load_config
from .core.spaces import IMAGE, TEXT
from .data import index_attribution
from .store.manifest import Manifest

# Queries the demo shows; generic everyday concepts, not chosen from the evaluation results.
DEMO_QUERIES = ("a red apple", "a dog", "a rocket", "a crying face", "pizza", "a rainbow")
# The demo's image query: the item whose stored image is used to find captions.
DEMO_IMAGE_ID = "1F680"


def format_hits(hits: list[Any]) -> str:
    """One line per hit: rank, score, modality, id, the emoji character if any, caption and language."""
    lines = []
    for rank, h in enumerate(hits, 1):
        char = h.metadata.get("char") or ""
        lang = f" [{', '.join(h.langs)}]" if h.langs else ""  # every language a grouped caption hit matched
        lines.append(f"{rank:3d}. {h.score:6.3f}  {h.modality:5s} {h.id:<24s} {char} {h.caption or ''}{lang}")
    return "\n".join(lines)


def run_demo(config: str | Path | Config | None = None, out: str | Path | None = None, *, rebuild: bool = False,
             device: str | None = None) -> None:
    """Reuse the demo index if it was built from this config (else build it), and print searches."""
    from .retriever import Retriever

    cfg = load_config(config)
    out = Path(out) if out else Path("indexes") / cfg.name
    try:
        current = Manifest.read(out).config == cfg
    except (FileNotFoundError, ValueError):
        current = False
    if current and not rebuild:
        print(f"reusing the index in {out} (pass --rebuild to build it again)")
        r = Retriever.load(out, device=device)
    else:
        print(f"building the OpenMoji demo index in {out} (first run: about 80 s on 2 idle CPU cores)")
        r = Retriever.build(cfg, out, device=device)
    print(f"\n{r.manifest.counts.items} items, {r.manifest.anchors.count} anchors, "
          f"text {r.manifest.encoders[TEXT].spec}, image {r.manifest.encoders[IMAGE].spec}")
    for q in DEMO_QUERIES:
        print(f"\ntext -> image  {q!r}")
        print(format_hits(r.search(text=q, k=5)))
    image_id = DEMO_IMAGE_ID if r.item(DEMO_IMAGE_ID) else r.items["image"].column("id")[0].as_py()
    image = r.thumbnail(image_id)
    if image is not None:
        item = r.item(image_id) or {}
        print(f"\nimage -> text  the image of {image_id} {item.get('char', '')} ({item.get('caption', '')})")
        # in the primary language: every item's caption in nine languages would fill the five hits otherwise
        print(format_hits(r.search(image=image, k=5, result_lang=r.caption_languages[0])))
    notice = index_attribution(r.manifest.config)  # the notice of the index's own source; a folder has none
    if notice is not None:
        print(f"\n{notice}")
