"""Encoder spec strings: one encoder (``"minilm"``) or an ensemble of weighted members (``"minilm + 0.5*minilm-l3"``).

An ensemble has one canonical string, so that it travels wherever a single spec does: the manifest, the CLI
(``--text-encoder "minilm + minilm-l3"``), sweep grids and the embedding cache. A config may write it as a list
instead; :func:`ensemble_spec` turns the list into the string. This module imports nothing heavy, because the
config reads it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SEPARATOR = " + "
PREFIX = "?prefix="  # a text encoder's option (encoders.base.split_prefix); what follows it is kept verbatim
_WEIGHT = re.compile(r"^(?P<weight>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\*(?P<spec>.+)$")


@dataclass(frozen=True)
class Member:
    """One encoder of an ensemble and the weight of its relative vectors in the combination."""

    spec: str  # a single encoder spec: alias or "<scheme>:<body>"
    weight: float = 1.0  # weight of this member's (L2-normalised) relative vector in the weighted mean

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str) or not self.spec.strip() or SEPARATOR.strip() == self.spec.strip():
            raise ValueError(f"an ensemble member needs an encoder spec, got {self.spec!r}")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"ensemble member {self.spec!r}: weight must be a positive number, got {self.weight!r}")

    def __str__(self) -> str:
        weight = repr(float(self.weight)).removesuffix(".0")  # the shortest text that reads back the same float
        return self.spec if self.weight == 1 else f"{weight}*{self.spec}"


def parse_members(spec: str) -> list[Member]:
    """The members of a spec string; a single encoder is an ensemble of one."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"an encoder spec must be a non-empty string, got {spec!r}")
    members = []
    for part in spec.split(SEPARATOR):
        head, sep, prefix = part.partition(PREFIX)
        part = head.strip() + sep + prefix  # a text prefix is verbatim: "query: " keeps its space
        m = _WEIGHT.match(part)
        members.append(Member(m["spec"].strip(), float(m["weight"])) if m else Member(part))
    specs = [m.spec for m in members]
    duplicate = next((s for s in specs if specs.count(s) > 1), None)
    if duplicate is not None:
        raise ValueError(f"encoder {duplicate!r} appears twice in the ensemble {spec!r}; give it a weight instead")
    return members


def format_members(members: Sequence[Member]) -> str:
    """The canonical string of ``members`` (weight 1 is left out)."""
    if not members:
        raise ValueError("an ensemble needs at least one encoder")
    return SEPARATOR.join(str(m) for m in members)


def ensemble_spec(value: Any, key: str = "encoder") -> str:
    """A config value (a spec string, or a list of specs and ``{spec, weight}`` mappings) as one canonical string.

    Args:
        value: what the config holds.
        key: the config key, for the error message.
    """
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"{key} must be an encoder spec or a list of them, got {value!r}")
    members: list[Member] = []
    for i, item in enumerate(items):
        where = key if isinstance(value, str) else f"{key}[{i}]"
        try:
            if isinstance(item, Member):
                members.append(item)
            elif isinstance(item, str):
                members.extend(parse_members(item))
            elif isinstance(item, dict) and set(item) <= {"spec", "weight"} and "spec" in item:
                members.append(Member(item["spec"], item.get("weight", 1.0)))
            else:
                raise ValueError(f"expected a spec string or a mapping with keys spec and weight, got {item!r}")
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    return format_members(parse_members(format_members(members)))  # one path checks duplicates and the grammar
