"""The ``relspace`` command line: a thin layer that parses arguments, calls the Python API and prints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from .config import load_config
from .layout import SKIPPED
from .version import __version__

logger = logging.getLogger("pipeline.cli")

# Environment switches that silence third-party progress bars (🤗 hub and transformers' "Loading weights",
# 🤗 datasets' "Generating train split"), read when those libraries are imported.
QUIET_ENV = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("pipeline").setLevel(level)
    for noisy in ("faiss", "faiss.loader", "httpx", "sentence_transformers", "datasets", "timm"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    if verbosity < 0:
        _silence_progress_bars()


def _silence_progress_bars() -> None:
    """-q means no bars at all: ours follow the log level; the libraries' need their own switches."""
    for name in QUIET_ENV:
        os.environ.setdefault(name, "1")
    # Already imported (a caller of main() in-process): switch them off directly.
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()


def _print_hits(hits: list[Any], as_json: bool) -> None:
    from .demo import format_hits

    print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2) if as_json else format_hits(hits))


def cmd_build(args: argparse.Namespace) -> int:
    from . import Retriever

    r = Retriever.build(args.config, args.out, device=args.device, resume=args.resume, engine=_engine(args))
    counts = r.manifest.counts
    skipped = f"; {counts['skipped']} bad rows skipped (listed in {r.index_dir / SKIPPED})" if counts["skipped"] else ""
    print(f"built {r.index_dir}: {counts['image']} images, {counts['text']} captions, "
          f"{r.manifest.anchors['count']} anchors{skipped}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from . import Retriever

    r = Retriever.load(args.index_dir, device=args.device)
    before = r.manifest.counts["items"]
    r.add(args.config, upsert=args.upsert, engine=_engine(args))
    print(f"added to {r.index_dir}: {r.manifest.history[-1]['added']} items ({r.manifest.history[-1]['upserted']} "
          f"replaced); now {r.manifest.counts['items']} items (was {before}), {r.manifest.counts['text']} captions")
    return 0


def _engine(args: argparse.Namespace) -> Any:
    from .engines import make_engine

    return make_engine(args.engine, **{k: getattr(args, k) for k in ("address", "num_actors", "actor_cpus",
                                                                      "actor_gpus")})


def _engine_options(s: argparse.ArgumentParser) -> None:
    """--engine and the Ray options, shared by build and add."""
    s.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where shards are embedded and FAISS filled: this process, or a Ray cluster")
    g = s.add_argument_group("ray engine (pip install 'relspace[ray]')")
    g.add_argument("--address", help="Ray cluster to join (e.g. auto); default: $RAY_ADDRESS or a new local one")
    g.add_argument("--num-actors", type=int, help="encoder actors (default: sized from the cluster)")
    g.add_argument("--actor-cpus", type=float, help="CPUs per actor (default 1)")
    g.add_argument("--actor-gpus", type=float, help="GPUs per actor (default: 1 if the cluster has any)")


def cmd_remove(args: argparse.Namespace) -> int:
    from . import Retriever

    r = Retriever.load(args.index_dir, device=args.device).remove(args.ids)
    print(f"removed {len(set(args.ids))} items from {r.index_dir}; now {r.manifest.counts['items']} items, "
          f"{r.manifest.counts['text']} captions")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from . import Retriever

    r = Retriever.load(args.index_dir, device=args.device)
    hits = r.search(text=args.text, image=args.image, k=args.k, target=args.target, lang=args.lang,
                    result_lang=args.result_lang)
    _print_hits(hits, args.json)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import dumps, evaluate, format_table

    overrides = {}
    for key, val in (("anchors.count", args.anchors), ("eval.seeds", args.seeds), ("anchors.strategy", args.strategy),
                     ("eval.plot_dir", args.plots), ("eval.task", args.task)):
        if val is not None:
            overrides[key] = val
    if args.directions:
        overrides["eval.directions"] = args.directions.split(",")
    if args.anchor_counts:
        overrides["eval.anchor_counts"] = [int(c) for c in args.anchor_counts.split(",")]
    if args.labels:
        overrides["eval.label_columns"] = args.labels.split(",")
    report = evaluate(load_config(args.config, **overrides))
    print(dumps(report) if args.json else format_table(report))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import yaml

    from .evaluate import format_rows, sweep

    grid: dict[str, list[Any]] = {}
    for item in args.grid:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--grid takes key=v1,v2,..., got {item!r}")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    rows = sweep(args.config, grid, baselines=args.baselines)
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.config, args.out, rebuild=args.rebuild, device=args.device)
    return 0


def cmd_reanchor(args: argparse.Namespace) -> int:
    from . import Retriever
    from .encoders import check_spec

    swaps = [(m, spec) for m, spec in (("text", args.text_encoder), ("image", args.image_encoder)) if spec]
    if not swaps:
        raise ValueError("name the new encoder: --text-encoder SPEC and/or --image-encoder SPEC")
    for modality, spec in swaps:  # a bad second spec must not leave the index half re-anchored
        check_spec(spec, modality)
    r = Retriever.load(args.index_dir, device=args.device)
    for i, (modality, spec) in enumerate(swaps):
        # The first swap writes the destination; a second one rewrites that new index in place.
        r = r.swap_encoder(modality, spec, lang=args.lang if modality == "text" else None,
                           out=args.out if i == 0 else None, in_place=args.in_place or i > 0)
        print(f"re-anchored {modality} of {r.index_dir}: now queried with {spec} ({r.manifest.anchors['count']} "
              f"anchors re-embedded; {r.manifest.counts[modality]} stored vectors unchanged)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .info import format_info, index_info

    info = index_info(args.index_dir)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_info(info))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.index_dir, host=args.host, port=args.port, device=args.device, reload_every=args.reload_every or None)
    return 0


def build_parser() -> argparse.ArgumentParser:

    p = argparse.ArgumentParser(prog="relspace", description="Cross-modal retrieval through relative representations.")
    p.add_argument("--version", action="version", version=f"relspace {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    p.add_argument("--device", default=None, help="torch device (default: CUDA when available)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("build", help="build an index from a YAML config")
    s.add_argument("config", help="YAML config file")
    s.add_argument("--out", default=None, help="output directory (default indexes/<name>)")
    again = s.add_mutually_exclusive_group()
    again.add_argument("--resume", dest="resume", action="store_const", const=True, default=None,
                       help="continue a stopped build from its finished shards (the default when there is one); "
                            "fail if there is none")
    again.add_argument("--fresh", dest="resume", action="store_const", const=False,
                       help="discard a stopped build's shards and start over")
    _engine_options(s)
    s.set_defaults(fn=cmd_build)

    s = sub.add_parser("add", help="add the items of a config's data section to an index (no rebuild)")
    s.add_argument("index_dir")
    s.add_argument("config", help="YAML config whose data section names the new items; the rest is ignored")
    s.add_argument("--upsert", action="store_true", help="replace items whose id is already in the index")
    _engine_options(s)
    s.set_defaults(fn=cmd_add)

    s = sub.add_parser("remove", help="remove items from an index by id")
    s.add_argument("index_dir")
    s.add_argument("--ids", nargs="+", required=True, metavar="ID", help="ids of the items to remove")
    s.set_defaults(fn=cmd_remove)

    s = sub.add_parser("search", help="search an index with a text or an image")
    s.add_argument("index_dir")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="query text")
    q.add_argument("--image", help="query image file")
    s.add_argument("-k", type=int, default=10, help="number of hits")
    s.add_argument("--target", choices=["image", "text"], default=None, help="what to find (default: other modality)")
    s.add_argument("--lang", default=None, help="language of the text query")
    s.add_argument("--result-lang", default=None, help="only captions in this language (image -> text)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_search)

    s = sub.add_parser("eval", help="evaluate retrieval (or classification) and every baseline on seeded splits")
    s.add_argument("config", nargs="?", default=None, help="YAML config (default: the embedded OpenMoji setup)")
    s.add_argument("--anchors", type=int, default=None, help="anchor count (overrides the config)")
    s.add_argument("--seeds", type=int, default=None, help="number of seeds (overrides the config)")
    s.add_argument("--strategy", default=None, help="anchor selection strategy (overrides the config)")
    s.add_argument("--directions", default=None, help="comma-separated: t2i,i2t")
    s.add_argument("--anchor-counts", default=None, help="comma-separated anchor counts for the R@10 curve")
    s.add_argument("--plots", default=None, help="directory for PNG plots")
    s.add_argument("--task", choices=["retrieval", "classify"], default=None,
                   help="retrieval (R@K, MRR) or zero-shot image classification (top-1/top-5); default: the config's")
    s.add_argument("--labels", default=None, help="classify: comma-separated label columns (overrides the config)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("sweep", help="evaluate a grid of config overrides on the same splits")
    s.add_argument("config", nargs="?", default=None, help="YAML config (default: the embedded OpenMoji setup)")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a dotted config key and its values, e.g. projector.power=1,2,4 (repeatable)")
    s.add_argument("--baselines", action="store_true", help="also run the configured baselines for each row")
    s.add_argument("--json", action="store_true", help="print JSON rows")
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("demo", help="build (once) and query the offline OpenMoji demo index")
    s.add_argument("--config", default=None, help="YAML config (default: the embedded OpenMoji demo)")
    s.add_argument("--out", default=None, help="index directory (default indexes/openmoji)")
    s.add_argument("--rebuild", action="store_true", help="rebuild even if a matching index exists")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("reanchor", help="swap an index's text or image encoder by re-embedding the anchors only")
    s.add_argument("index_dir")
    s.add_argument("--text-encoder", default=None, help="new text encoder spec")
    s.add_argument("--image-encoder", default=None, help="new image encoder spec")
    s.add_argument("--lang", default=None, help="swap only this language's text encoder")
    dest = s.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", default=None, help="write the re-anchored index here (the original stays usable)")
    dest.add_argument("--in-place", action="store_true",
                      help="rewrite INDEX_DIR itself; its old encoder can no longer query it")
    s.set_defaults(fn=cmd_reanchor)

    s = sub.add_parser("info", help="what an index holds: encoders, anchors, counts, FAISS and the auto choice")
    s.add_argument("index_dir")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("serve", help="serve an index over HTTP with a search page")
    s.add_argument("index_dir")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--reload-every", type=float, default=0.5, metavar="S",
                   help="check for a new version of the index every S seconds and swap it in (0: never)")
    s.set_defaults(fn=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; tests call ``main([...])`` in-process."""
    args = build_parser().parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("relspace: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every failure is one line; the traceback is for -v
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"relspace: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(e: BaseException) -> str:
    """The error's own message, first line only; the type name where the message says too little."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, (ValueError, FileNotFoundError)) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
