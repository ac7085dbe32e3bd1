"""Writes a tiny random Qwen3-MoE (``Qwen3MoeForCausalLM``, the architecture of deployments/wide-ep.yaml's
Qwen3-235B-A22B: hidden 128, 2 layers, 4 heads, 2 KV heads, 8 experts of which 2 per token, every layer sparse, bf16)
with the tiny dense model's tokenizer (testbed/tiny_model.py), into the directory given. Nothing is downloaded.

Run with the vLLM test venv's Python from the repository root: ``python -m testbed.tiny_moe_model OUT_DIR``.
Idempotent (a complete OUT_DIR is kept).
"""

from __future__ import annotations

import sys
from pathlib import Path

from testbed.tiny_model import VOCAB
from testbed.tiny_model import main as with_tokenizer

EXPERTS = 8
EXPERTS_PER_TOKEN = 2


def write_model(out: Path) -> None:
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=256,
        moe_intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts=EXPERTS,
        num_experts_per_tok=EXPERTS_PER_TOKEN,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        norm_topk_prob=True,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        dtype="bfloat16",
    )
    model = Qwen3MoeForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    with_tokenizer(Path(sys.argv[1]), write_model)
