"""A build embeds each item once: the anchors' vectors from the anchor phase are reused in the shards, and the
stored shards hold exactly the vectors of the build that embedded every item again (today's path, rebuilt here
from the public pieces with nothing reused)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline import Retriever
from pipeline.config import Config, load_config
from pipeline.core.spaces import IMAGE, SpaceKey
from pipeline.data import load_data
from pipeline.indexing.stream import Projection, encoder_for
from pipeline.space.anchors import AnchorSet
from pipeline.space.fit import embed_anchors, fit_projectors
from pipeline.store.layout import ANCHORS
from pipeline.store.shards import open_shards


@pytest.mark.parametrize("strategy", ["random", "kmeans"])
def test_stored_vectors_equal_those_of_a_build_that_embeds_everything_again(
    strategy: str, small_config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = small_config.to_dict()
    raw["data"]["cache_dir"] = str(tmp_path / "cache")  # an empty embedding cache: the shards must embed
    raw["anchors"]["strategy"] = strategy
    cfg = load_config(raw)
    caplog.set_level(logging.INFO, logger="pipeline.encoders.reuse")
    r = Retriever.build(cfg, tmp_path / "index")

    n_anchors, languages = cfg.anchors.count, cfg.data.languages
    reused = [(int(m[1]), int(m[2]), m[3]) for m in re.finditer(r"reused (\d+) of (\d+) (\w+) vectors", caplog.text)]
    # random: the shards reuse the anchors' images. kmeans: its pool was the whole data, so the anchors and then
    # the shards take every image from it. Captions are embedded again (MiniLM is not batch-invariant).
    n = small_config.data.limit
    if strategy == "random":
        assert reused == [(n_anchors, n, "image")]
    else:
        assert (n_anchors, n_anchors, "image") in reused and reused[-1] == (n, n, "image")
    assert {m for _, _, m in reused} == {"image"}

    # today's path: the anchors embedded on their own, then every item of the data embedded again
    encoders = {IMAGE: r.encoder("image"), SpaceKey("text"): r.encoder("text")}
    anchors = AnchorSet.load(tmp_path / "index" / ANCHORS)
    spaces = [IMAGE, *(SpaceKey.text(lang) for lang in languages)]
    sides = {s: embed_anchors(anchors, encoder_for(encoders, s), s, batch_size=cfg.batch_size) for s in spaces}
    projectors = fit_projectors(sides, cfg.projector, total=len(anchors), pair=(SpaceKey.text(languages[0]), IMAGE))
    expected = Projection(encoders, projectors, languages, anchors.hash, cfg.batch_size).block(load_data(cfg.data))

    (shard,) = open_shards(tmp_path / "index")
    for modality in ("image", "text"):
        stored = np.asarray(shard.vectors(modality))
        assert stored.shape == expected.vectors[modality].shape
        assert np.array_equal(stored, expected.vectors[modality]), modality
