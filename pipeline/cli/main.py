"""The ``relspace`` entry point: logging and progress switches, one command, every failure as one line."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

from ..core.progress import disable_progress_bars
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
    """-q means no bars at all: ours and the libraries', each through its own switch."""
    disable_progress_bars()
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
        code = args.fn(args)
        sys.stdout.flush()  # a closed pipe (``relspace info X --json | head``) shows here, not at exit
        return code
    except BrokenPipeError:
        # The reader went away: nothing more to say to it. Point stdout at /dev/null so the interpreter's own
        # flush at exit cannot raise again, and exit as a process killed by SIGPIPE would (128 + 13).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("relspace: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every failure is one line; the traceback is for -v
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"relspace: error: {_one_line(e)}", file=sys.stderr)
        return 2


# Exceptions that only a bug raises: their one line keeps the type and asks for a report, since the message of a
# KeyError or a TypeError ("'counts'") means nothing without it. Every other error is the user's to fix, and its
# message alone is what they read.
BUGS = (AssertionError, AttributeError, IndexError, KeyError, NameError, TypeError, UnboundLocalError)


def _one_line(e: BaseException) -> str:
    """The error's own message, first line only; for a bug, its type and where to go next."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, BUGS) or not text:
        return f"{type(e).__name__}: {text} (a bug in relspace: rerun with -v for the traceback and report it)"
    return text

