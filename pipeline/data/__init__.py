"""Data sources through 🤗 datasets: a registry of loaders that all yield the same columns (see ``base``).

Importing this package registers the built-in sources (``openmoji``, ``folder``, ``hf``).
"""

from . import hf, sources  # noqa: F401  (register the built-in sources)
from .base import (
    REQUIRED_COLUMNS,
    Attribution,
    DataSource,
    cache_dir,
    caption_list,
    caption_rows,
    captions,
    check_ids,
    describe_data,
    first_caption,
    index_attribution,
    list_sources,
    load_data,
    register_source,
    source_attribution,
    source_labels,
)
from .checks import BadRow

__all__ = ["REQUIRED_COLUMNS", "Attribution", "BadRow", "DataSource", "cache_dir", "caption_list", "caption_rows",
           "captions", "check_ids", "describe_data", "first_caption", "index_attribution",
           "list_sources", "load_data", "register_source", "source_attribution", "source_labels"]
