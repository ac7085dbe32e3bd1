"""The model's own tokenizer and chat template, and the character fallback."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from runtime.router.requests.openai_request import OpenAiRequest
from runtime.router.requests.prompt_reader import PromptReader
from runtime.router.requests.prompt_tokenizer import PromptTokenizer


def test_completions_tokenize_like_the_tokenizer(tokenizer_dir: Path) -> None:
    raw = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    request = OpenAiRequest.parse("completions", b'{"model": "m", "prompt": "def f(x): return x"}')
    assert PromptTokenizer(tokenizer_dir).tokens(request) == raw.encode("def f(x): return x").ids


def test_chat_applies_the_template(tokenizer_dir: Path) -> None:
    request = OpenAiRequest.parse(
        "chat", b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}'
    )
    tokenizer = PromptTokenizer(tokenizer_dir)
    assert tokenizer.render_chat(request) == "<|user|>\nhello\n<|assistant|>\n"
    raw = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    assert tokenizer.tokens(request) == raw.encode("<|user|>\nhello\n<|assistant|>\n", add_special_tokens=False).ids


def test_token_id_prompts_are_taken_as_they_are(tokenizer_dir: Path) -> None:
    request = OpenAiRequest.parse("completions", b'{"model": "m", "prompt": [[5, 6, 7], [1]]}')
    assert PromptTokenizer(tokenizer_dir).tokens(request) == [5, 6, 7]


def test_reader_falls_back_to_characters() -> None:
    request = OpenAiRequest.parse("completions", b'{"model": "m", "prompt": "' + b"a" * 400 + b'"}')
    blocks = PromptReader(32, None).blocks(request)
    assert not blocks.exact and len(blocks.keys) == 3


def test_reader_survives_a_template_error(tokenizer_dir: Path) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"messages": 1}}'
    blocks = PromptReader(32, PromptTokenizer(tokenizer_dir)).blocks(OpenAiRequest.parse("chat", body))
    assert not blocks.exact
