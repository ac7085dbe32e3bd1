"""The bench model's vocabulary and tokenizer: one token per word (a WordLevel tokenizer on whitespace), so a
workload states its prompt lengths in tokens exactly and every router and engine agrees on them. Written to a
directory (tokenizer.json + tokenizer_config.json with a chat template) that the fake engines and pdstack's router
both load, the way both load the served model's tokenizer in a cluster."""

from __future__ import annotations

import json
from pathlib import Path

VOCABULARY_SIZE = 8192
SPECIAL = ["[UNK]", "<s>", "</s>", "<|", "|>", "user", "assistant", "system"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def word(index: int) -> str:
    return f"w{index % VOCABULARY_SIZE}"


def write_tokenizer(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(SPECIAL)}
    for i in range(VOCABULARY_SIZE):
        vocab[word(i)] = len(vocab)
    for i in range(4096):
        vocab.setdefault(f"tok{i}", len(vocab))
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": vocab[t],
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t in ("[UNK]", "<s>", "</s>")
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "chat_template": CHAT_TEMPLATE,
                "tokenizer_class": "PreTrainedTokenizerFast",
            }
        )
    )
    return directory
