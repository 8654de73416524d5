"""Unicode emoji groups and subgroups (UTS #51 ``emoji-test.txt``), the class labels of the OpenMoji set.

The ``emoji`` package carries names but not groups. The ``emoji-data`` package ships Unicode's own
``emoji-test.txt``; only that data file is read here (its Python code is never imported).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from importlib import metadata, resources
from typing import NamedTuple

logger = logging.getLogger(__name__)

DATA_PACKAGE = "emoji-data"  # the distribution that ships the file
EMOJI_TEST = ("emoji_data", "data", "emoji-test.txt")  # import package, then the path inside it
VARIATION_SELECTOR = "FE0F"  # emoji presentation selector: present in some spellings of an emoji, not in others


class EmojiGroup(NamedTuple):
    """Where UTS #51 files an emoji: a group ("Smileys & Emotion") and a subgroup ("face-smiling")."""

    group: str
    subgroup: str


def group_key(emoji_id: str) -> str:
    """The lookup key of an id of hex code points joined by '-': uppercase, without FE0F.

    Dropping FE0F makes a fully-qualified spelling and its unqualified one the same key.
    """
    return "-".join(cp for cp in emoji_id.upper().split("-") if cp and cp != VARIATION_SELECTOR)


def parse_emoji_test(lines: Iterable[str]) -> dict[str, EmojiGroup]:
    """Key (see :func:`group_key`) -> group, from the lines of an ``emoji-test.txt``.

    The file lists ``# group: G`` and ``# subgroup: S`` headers, each followed by data lines of the form
    ``1F600 ; fully-qualified # 😀 E1.0 grinning face``; the first spelling of a key wins.
    """
    out: dict[str, EmojiGroup] = {}
    group = subgroup = None
    for line in lines:
        line = line.strip()
        if line.startswith("# group:"):
            group = line.partition(":")[2].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.partition(":")[2].strip()
        elif line and not line.startswith("#") and group and subgroup:
            codes = line.partition(";")[0].split()
            out.setdefault(group_key("-".join(codes)), EmojiGroup(group, subgroup))
    return out


@functools.lru_cache(maxsize=1)
def emoji_groups() -> dict[str, EmojiGroup]:
    """Every emoji of the shipped ``emoji-test.txt``, keyed by :func:`group_key`; empty without the package."""
    package, *path = EMOJI_TEST
    try:
        node = resources.files(package)
    except ModuleNotFoundError:  # said once, where labels are asked for (groups_missing_hint); quiet otherwise
        logger.debug("no %r package: OpenMoji items get no group labels", DATA_PACKAGE)
        return {}
    for part in path:  # one part at a time: joinpath takes a single part on Python 3.10
        node = node.joinpath(part)
    text = node.read_text(encoding="utf-8")
    return parse_emoji_test(text.splitlines())


def emoji_group(emoji_id: str) -> EmojiGroup | None:
    """The group of an OpenMoji-style id ("1F600", "2764-FE0F"), or None if Unicode does not list it."""
    return emoji_groups().get(group_key(emoji_id))


def groups_version() -> str:
    """The version of the package the groups come from, or "none" (never part of a cache key)."""
    try:
        return metadata.version(DATA_PACKAGE)
    except metadata.PackageNotFoundError:
        return "none"


def groups_missing_hint() -> str:
    """What to install for OpenMoji's group labels: said by eval --task classify when they are empty."""
    return (f"OpenMoji's Unicode group labels need the optional package {DATA_PACKAGE!r}: pip install "
            "'relspace[classify]' (it is GPL-3.0, so the MIT core does not require it)")
