"""The ``relspace`` command line: a thin layer that parses arguments, calls the Python API and prints."""

from .main import main
from .parser import build_parser

__all__ = ["build_parser", "main"]
