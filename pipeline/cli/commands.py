"""One function per ``relspace`` command: call the Python API with the parsed arguments and print."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ..config import load_config
from ..store.layout import SKIPPED
from ..store.records import UpdateEvent

logger = logging.getLogger(__name__)


def _print_hits(hits: list[Any], as_json: bool) -> None:
    from ..demo import format_hits

    print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2) if as_json else format_hits(hits))


def cmd_build(args: argparse.Namespace) -> int:
    from ..retriever import Retriever

    r = Retriever.build(args.config, args.out, device=args.device, resume=args.resume, engine=_engine(args))
    counts = r.manifest.counts
    skipped = f"; {counts.skipped} bad rows skipped (listed in {r.index_dir / SKIPPED})" if counts.skipped else ""
    print(f"built {r.index_dir}: {counts.image} images, {counts.text} captions, "
          f"{r.manifest.anchors.count} anchors{skipped}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from ..retriever import Retriever

    r = Retriever.load(args.index_dir, device=args.device)
    before = r.manifest.counts.items
    r.add(args.config, upsert=args.upsert, engine=_engine(args))
    event = r.manifest.history[-1]
    assert isinstance(event, UpdateEvent), "an add publishes an update entry"
    print(f"added to {r.index_dir}: {event.added} items ({event.upserted} replaced); now {r.manifest.counts.items} "
          f"items (was {before}), {r.manifest.counts.text} captions")
    return 0


def _engine(args: argparse.Namespace) -> Any:
    from ..indexing.engines import make_engine

    return make_engine(args.engine, **{k: getattr(args, k) for k in ("address", "num_actors", "actor_cpus",
                                                                      "actor_gpus")})


def engine_options(s: argparse.ArgumentParser) -> None:
    """--engine and the Ray options, shared by build and add."""
    s.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where shards are embedded and FAISS filled: this process, or a Ray cluster")
    g = s.add_argument_group("ray engine (pip install 'relspace[ray]')")
    g.add_argument("--address", help="Ray cluster to join (e.g. auto); default: $RAY_ADDRESS or a new local one")
    g.add_argument("--num-actors", type=int, help="encoder actors (default: sized from the cluster)")
    g.add_argument("--actor-cpus", type=float, help="CPUs per actor (default 1)")
    g.add_argument("--actor-gpus", type=float, help="GPUs per actor (default: 1 if the cluster has any)")


def cmd_remove(args: argparse.Namespace) -> int:
    from ..retriever import Retriever

    r = Retriever.load(args.index_dir, device=args.device).remove(args.ids)
    print(f"removed {len(set(args.ids))} items from {r.index_dir}; now {r.manifest.counts.items} items, "
          f"{r.manifest.counts.text} captions")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ..retriever import Retriever

    r = Retriever.load(args.index_dir, device=args.device)
    hits = r.search(text=args.text, image=args.image, k=args.k, target=args.target, lang=args.lang,
                    result_lang=args.result_lang)
    _print_hits(hits, args.json)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluate import dumps, evaluate, format_table

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

    from ..evaluate import format_rows, sweep

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
    from ..demo import run_demo

    run_demo(args.config, args.out, rebuild=args.rebuild, device=args.device)
    return 0


def cmd_reanchor(args: argparse.Namespace) -> int:
    from ..encoders import check_spec
    from ..retriever import Retriever

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
        print(f"re-anchored {modality} of {r.index_dir}: now queried with {spec} ({r.manifest.anchors.count} "
              f"anchors re-embedded; {r.manifest.counts.vectors(modality)} stored vectors unchanged)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..store.info import format_info, index_info

    info = index_info(args.index_dir)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_info(info))
    for problem in info["problems"]:
        print(f"relspace: damaged: {args.index_dir}/{problem}", file=sys.stderr)
    return 1 if info["problems"] else 0


# ``relspace verify`` exit codes: 0 every checksum and vector norm as published; 1 damaged (a line per problem);
# 3 an index written before checksums were recorded, which cannot be verified (never a pass). 2 stays every
# command's code for an error (no index there).
VERIFY_OK, VERIFY_DAMAGED, VERIFY_NO_CHECKSUMS = 0, 1, 3


def cmd_verify(args: argparse.Namespace) -> int:
    from ..store.verify import no_checksums, verify_index

    report = verify_index(args.index_dir)
    for problem in report.problems:
        print(f"damaged: {args.index_dir}/{problem}")
    if report.problems:
        print(f"relspace: {args.index_dir} is damaged ({len(report.problems)} problems): rebuild it", file=sys.stderr)
        return VERIFY_DAMAGED
    if not report.has_checksums:
        print(f"relspace: {no_checksums(args.index_dir)}", file=sys.stderr)
        return VERIFY_NO_CHECKSUMS
    print(f"{args.index_dir}: ok ({len(report.checked)} files, {report.vectors} vector norms checked)")
    return VERIFY_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import serve

    serve(args.index_dir, host=args.host, port=args.port, device=args.device, reload_every=args.reload_every or None,
          verify=args.verify)
    return 0


