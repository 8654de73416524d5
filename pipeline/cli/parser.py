"""The ``relspace`` argument parser: every command's options, each bound to its function in :mod:`.commands`."""

from __future__ import annotations

import argparse

from ..version import __version__
from .commands import (
    cmd_add,
    cmd_build,
    cmd_demo,
    cmd_eval,
    cmd_info,
    cmd_reanchor,
    cmd_remove,
    cmd_search,
    cmd_serve,
    cmd_sweep,
    cmd_verify,
    engine_options,
)


def global_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """-v, -q and --device, accepted before and after the command (``relspace search -q ...``).

    The command's copies default to SUPPRESS, so an option given before the command is not reset by it.
    """
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("-v", "--verbose", action="count", default=default(0), help="more logging (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", default=default(False), help="warnings only, no progress bars")
    p.add_argument("--device", default=default(None), help="torch device (default: CUDA when available)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="relspace", description="Cross-modal retrieval through relative representations.")
    p.add_argument("--version", action="version", version=f"relspace {__version__}")
    global_options(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    global_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, **kw: object) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    s = add("build", help="build an index from a YAML config")
    s.add_argument("config", help="YAML config file")
    s.add_argument("--out", default=None, help="output directory (default indexes/<name>)")
    again = s.add_mutually_exclusive_group()
    again.add_argument("--resume", dest="resume", action="store_const", const=True, default=None,
                       help="continue a stopped build from its finished shards (the default when there is one); "
                            "fail if there is none")
    again.add_argument("--fresh", dest="resume", action="store_const", const=False,
                       help="discard a stopped build's shards and start over")
    engine_options(s)
    s.set_defaults(fn=cmd_build)

    s = add("add", help="add the items of a config's data section to an index (no rebuild)")
    s.add_argument("index_dir")
    s.add_argument("config", help="YAML config whose data section names the new items; the rest is ignored")
    s.add_argument("--upsert", action="store_true", help="replace items whose id is already in the index")
    engine_options(s)
    s.set_defaults(fn=cmd_add)

    s = add("remove", help="remove items from an index by id")
    s.add_argument("index_dir")
    s.add_argument("--ids", nargs="+", required=True, metavar="ID", help="ids of the items to remove")
    s.set_defaults(fn=cmd_remove)

    s = add("search", help="search an index with a text or an image")
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

    s = add("eval", help="evaluate retrieval (or classification) and every baseline on seeded splits")
    s.add_argument("config", nargs="?", default=None, help="YAML config (default: the embedded OpenMoji setup)")
    s.add_argument("--anchors", type=int, default=None, help="anchor count (overrides the config)")
    s.add_argument("--seeds", type=int, default=None, help="number of seeds (overrides the config)")
    s.add_argument("--strategy", default=None, help="anchor selection strategy (overrides the config)")
    s.add_argument("--directions", default=None, help="comma-separated: t2i,i2t")
    s.add_argument("--anchor-counts", default=None, help="comma-separated anchor counts for the R@10 curve")
    s.add_argument("--plots", default=None,
                   help="directory for PNG plots (e.g. plots/, git-ignored; docs/ holds the README's tracked figures)")
    s.add_argument("--task", choices=["retrieval", "classify"], default=None,
                   help="retrieval (R@K, MRR) or zero-shot image classification (top-1/top-5); default: the config's")
    s.add_argument("--labels", default=None, help="classify: comma-separated label columns (overrides the config)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(fn=cmd_eval)

    s = add("sweep", help="evaluate a grid of config overrides on the same splits")
    s.add_argument("config", nargs="?", default=None, help="YAML config (default: the embedded OpenMoji setup)")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a dotted config key and its values, e.g. projector.power=1,2,4 (repeatable)")
    s.add_argument("--baselines", action="store_true", help="also run the configured baselines for each row")
    s.add_argument("--json", action="store_true", help="print JSON rows")
    s.set_defaults(fn=cmd_sweep)

    s = add("demo", help="build (once) and query the offline OpenMoji demo index")
    s.add_argument("--config", default=None, help="YAML config (default: the embedded OpenMoji demo)")
    s.add_argument("--out", default=None, help="index directory (default indexes/openmoji)")
    s.add_argument("--rebuild", action="store_true", help="rebuild even if a matching index exists")
    s.set_defaults(fn=cmd_demo)

    s = add("reanchor", help="swap an index's text or image encoder by re-embedding the anchors only")
    s.add_argument("index_dir")
    s.add_argument("--text-encoder", default=None, help="new text encoder spec")
    s.add_argument("--image-encoder", default=None, help="new image encoder spec")
    s.add_argument("--lang", default=None, help="swap only this language's text encoder")
    dest = s.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", default=None, help="write the re-anchored index here (the original stays usable)")
    dest.add_argument("--in-place", action="store_true",
                      help="rewrite INDEX_DIR itself; its old encoder can no longer query it")
    s.set_defaults(fn=cmd_reanchor)

    s = add("info", help="what an index holds: encoders, anchors, counts, FAISS and the auto choice")
    s.add_argument("index_dir")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(fn=cmd_info)

    s = add("verify", help="check every file of an index against its checksums, and every stored vector's norm",
            description="Exit codes: 0 clean; 1 damaged (a line per damaged file); 2 error; "
                        "3 written by an older relspace without checksums (rebuild it to verify).")
    s.add_argument("index_dir")
    s.set_defaults(fn=cmd_verify)

    s = add("serve", help="serve an index over HTTP with a search page")
    s.add_argument("index_dir")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--reload-every", type=float, default=0.5, metavar="S",
                   help="check for a new version of the index every S seconds and swap it in (0: never)")
    s.add_argument("--verify", action="store_true",
                   help="check every checksum and vector norm before serving (as relspace verify; reads the index)")
    s.set_defaults(fn=cmd_serve)
    return p
