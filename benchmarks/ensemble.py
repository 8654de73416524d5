"""Ensemble section: what an encoder ensemble costs to encode, against its first member alone on the same items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import BUDGET, Section, Table, interleave, med, paired_ratio, spread, take


@dataclass
class EnsembleBench:
    """encode(items) through an ensemble vs through its first member (the single-encoder default), interleaved."""

    n: int = 256  # items per round (images as PNG bytes, or captions)
    reps: int = 5  # interleaved rounds; medians reported
    batch_size: int = 64  # encode batch size
    text: str = "minilm + minilm-l3 + e5-small"  # text ensemble spec: configs/openmoji-ensemble.yaml
    image: str = "efficientnet-lite0 + efficientnet-lite1 + efficientnet-lite2"  # image ensemble spec
    budget: float = BUDGET  # seconds per modality; no new round starts past it


def run(b: EnsembleBench, ds: Any) -> list[Table]:
    from pipeline.core.specs import parse_members
    from pipeline.encoders import create_encoder

    rows = []
    for modality, spec, column in (("text", b.text, "caption"), ("image", b.image, "image")):
        ensemble = create_encoder(spec, modality)
        single = ensemble.members[0]
        items = take(ds[column], b.n)
        times = interleave({"single": lambda r, e=single, x=items: e.encode(x, batch_size=b.batch_size),
                            "ensemble": lambda r, e=ensemble, x=items: e.encode(x, batch_size=b.batch_size)},
                           b.reps, b.budget)
        rows.append([modality, spec, single.spec, b.n / med(times["single"]), b.n / med(times["ensemble"]),
                     paired_ratio(times["ensemble"], times["single"]), spread(times["ensemble"], times["single"]),
                     len(parse_members(spec))])
    return [Table("ensemble", f"Encoder ensembles: encode cost against the first member, {b.n} items per round",
                  ["modality", "ensemble", "single", "single items/s", "ensemble items/s",
                   "time ratio ensemble/single (median)", "ratio IQR", "members"], rows,
                  ["each round encodes the same items through both paths (images include PNG decode and resize, "
                   "done once per member); the relative projection after it is the same order of cost for both"])]


SECTION = Section("ensemble", EnsembleBench, run, quick={"n": 64, "reps": 2}, options=("n", "reps", "budget"))
