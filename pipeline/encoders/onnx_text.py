"""``onnx:<model.onnx>@<tokenizer dir>``: a sentence encoder exported to ONNX, run on onnxruntime."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import Encoder, TextEncoder, register_encoder

logger = logging.getLogger(__name__)

MAX_TOKENS = 128  # sentence-transformers' usual max_seq_length for MiniLM models


class OnnxTextEncoder(TextEncoder):
    """Runs an ONNX graph with ``input_ids``/``attention_mask`` inputs.

    The sentence vector is the graph's 2-D float output if it has one (a pooled head), else the
    attention-masked mean of its 3-D token output, which is how sentence-transformers pools.
    """

    def __init__(self, model_path: str, tokenizer_dir: str):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        if not Path(model_path).is_file():
            raise ValueError(f"ONNX model not found: {model_path}")
        self.spec = f"onnx:{model_path}@{tokenizer_dir}"
        self.session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._version = f"onnxruntime {ort.__version__}; {Path(model_path).name}"
        self._dim = self.forward(["probe"]).shape[1]

    def forward(self, texts: list[str]) -> np.ndarray:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np")
        feeds = {k: tok[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")
                 if k in self._inputs and k in tok}
        outputs = self.session.run(None, feeds)
        pooled = [o for o in outputs if o.ndim == 2 and o.dtype == np.float32 and o.shape[0] == len(texts)
                  and o.shape[1] > 1]
        if pooled:
            return pooled[-1].astype(np.float32)
        tokens = next(o for o in outputs if o.ndim == 3)
        mask = tok["attention_mask"][..., None].astype(np.float32)
        return ((tokens * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)).astype(np.float32)


@register_encoder("onnx")
def _create(body: str, modality: str, device: str) -> Encoder:
    if modality != "text":
        raise ValueError(f"onnx:{body} is a text encoder; it cannot embed {modality}")
    model, sep, tokenizer = body.rpartition("@")
    if not sep:
        raise ValueError(f"onnx spec needs a tokenizer: onnx:<model.onnx>@<tokenizer dir>, got onnx:{body}")
    return OnnxTextEncoder(model, tokenizer)
