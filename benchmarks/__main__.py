"""``python -m benchmarks <section...> [options]``: run sections in order, print markdown tables.

    python -m benchmarks all                          # every section (~10 min on 2 shared cores)
    python -m benchmarks image text --quick           # some sections, smaller sizes
    python -m benchmarks workers                      # DataLoader workers x torch threads sweep
    python -m benchmarks query --block 1 --json out.json
    python -m benchmarks index --factories "Flat;IVF1024,Flat;HNSW32"

Sections: image, workers, text, query, index, ensemble (see benchmarks/README.md for what each ratio means).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import ensemble, image, index, query, text, workers
from .common import BUDGET, Section, Table, load_openmoji, machine, machine_line, timed_tables

SECTIONS: dict[str, Section] = {s.name: s for s in (image.SECTION, workers.SECTION, text.SECTION, query.SECTION,
                                                     index.SECTION, ensemble.SECTION)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="+", choices=(*SECTIONS, "all"), help="what to run, in order")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (a smoke run)")
    p.add_argument("--n", type=int, help="override the size of every selected section (images, captions, ...)")
    p.add_argument("--reps", type=int, help="image, workers, text: override the interleaved rounds")
    p.add_argument("--budget", type=float, default=BUDGET, help="seconds per section before rounds stop (%(default)s)")
    p.add_argument("--workers", type=int, help="image: DataLoader workers for encode (default: the encoder's)")
    p.add_argument("--threads", type=int, help="torch intra-op threads for every section (default: torch's)")
    p.add_argument("--index-dir", default=query.QueryBench.index_dir, help="query: index directory (built if missing)")
    p.add_argument("--rebuild", action="store_true", help="query: rebuild the index even if it exists")
    p.add_argument("--block", type=int, default=query.QueryBench.block,
                   help="query: paths alternate in blocks of this many queries; 1 alternates per query (%(default)s)")
    p.add_argument("--factories", type=lambda s: [f.strip() for f in s.split(";") if f.strip()],
                   help="index: FAISS factory strings separated by ';' (they contain commas)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p


def descriptor(section: Section, args: argparse.Namespace) -> Any:
    """The section's dataclass: defaults, then --quick sizes, then the options given that the section takes."""
    opts: dict[str, Any] = dict(section.quick) if args.quick else {}
    for name in section.options:
        value = getattr(args, name)
        if value is not None and value is not False:
            opts[name] = value
    return section.descriptor(**opts)


def run_sections(names: Sequence[str], args: argparse.Namespace) -> list[Table]:
    """Run each section once, in order, printing its tables as they come."""
    ds = load_openmoji() if any(SECTIONS[s].needs_data for s in names) else None
    tables = []
    for name in names:
        section = SECTIONS[name]
        desc = descriptor(section, args)
        for table in timed_tables(lambda: section.run(desc, ds)):  # noqa: B023 - called at once
            table.notes.append(f"descriptor: {desc}")
            print(table.markdown() + "\n", flush=True)
            tables.append(table)
    return tables


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    names = list(SECTIONS) if "all" in args.sections else list(dict.fromkeys(args.sections))
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)
    info = machine()
    print(f"## relspace benchmarks\n\n`{command}`\n\ncode: relspace {info['git']}\n", flush=True)
    print(machine_line(info) + "\n", flush=True)
    tables = run_sections(names, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "machine": info,
                                               "results": [asdict(t) for t in tables]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
