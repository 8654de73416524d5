"""The ``relspace`` entry point: logging and progress switches, one command, every failure as one line."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

from .parser import build_parser

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

