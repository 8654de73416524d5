"""Text section: ``encode(captions)`` vs the SentenceTransformer module stack on pre-tokenized batches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import BUDGET, Section, Table, interleave, med, paired_ratio, spread, take


@dataclass
class TextBench:
    """encode(captions) vs the SentenceTransformer forward (with pooling) on pre-tokenized batches."""

    n: int = 256  # captions per round; successive rounds take successive slices of the 1,914 captions
    batch_size: int = 64  # encode and forward batch size
    reps: int = 30  # interleaved rounds (short ones, so that noise bursts hit few of them); medians reported
    spec: str = "minilm"  # text encoder spec; a sentence-transformers one ("st:..." or an alias of one)
    budget: float = BUDGET  # seconds; no new round starts past it


def run(b: TextBench, ds: Any) -> list[Table]:
    """Interleave encode, the bare module stack, and SentenceTransformer.encode in one call."""
    import torch
    from sentence_transformers.util import batch_to_device

    from pipeline.encoders import create_encoder

    enc = create_encoder(b.spec, "text", "cpu")
    model = getattr(enc, "model", None)  # the SentenceTransformer that st: encoders wrap
    if model is None:
        raise ValueError(f"{b.spec}: the text section needs a sentence-transformers encoder (st:...)")
    tokenize_fn = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers >= 6 renamed it
    all_captions = list(ds["caption"])
    slices = [take(all_captions, b.n, r * b.n) for r in range(b.reps)]  # round r embeds slices[r]
    t0 = time.perf_counter()
    features = [[tokenize_fn(c[i : i + b.batch_size]) for i in range(0, len(c), b.batch_size)] for c in slices]
    tokenize = b.n * b.reps / (time.perf_counter() - t0)

    def forward(r: int) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for f in features[r]:
                out.append(model(batch_to_device(f, model.device))["sentence_embedding"].float().cpu().numpy())
        return np.vstack(out)

    np.testing.assert_allclose(enc.encode(slices[0]), forward(0), rtol=1e-4, atol=1e-5)
    times = interleave({
        "encode": lambda r: enc.encode(slices[r], batch_size=b.batch_size),
        "forward": forward,
        "st_encode": lambda r: model.encode(slices[r], batch_size=b.batch_size, show_progress_bar=False),
    }, b.reps, b.budget)
    rounds = len(times["encode"])
    ips = {k: b.n / med(v) for k, v in times.items()}
    ratio = paired_ratio(times["forward"], times["encode"])
    rows = [
        ["relspace encode(captions)", ips["encode"], ratio, spread(times["forward"], times["encode"]),
         sum(times["forward"]) / sum(times["encode"])],
        ["bare forward + pooling on pre-tokenized batches", ips["forward"], 1.0, "", 1.0],
        ["tokenize only (once, all rounds' captions)", tokenize, float("nan"), "", float("nan")],
        ["SentenceTransformer.encode(captions) in one call (what encode wraps)", ips["st_encode"],
         paired_ratio(times["forward"], times["st_encode"]), spread(times["forward"], times["st_encode"]),
         sum(times["forward"]) / sum(times["st_encode"])],
    ]
    return [Table(
        "text", f"Text encoding: {b.spec}, {rounds} rounds of {b.n} captions, batch {b.batch_size}",
        ["path", "captions/s (median)", "ratio vs bare forward (median)", "ratio IQR", "ratio of sums"], rows,
        [f"ratio = median over {rounds} interleaved rounds of t(forward)/t(encode), each round on the same "
         f"{b.n} captions; goal >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'}"])]


SECTION = Section("text", TextBench, run, quick={"n": 128, "reps": 10}, options=("n", "reps", "budget"))
