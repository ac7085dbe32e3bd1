"""The model's own tokenizer, loaded locally (``tokenizer.json`` through ``tokenizers``, no transformers or torch),
and its chat template (``tokenizer_config.json``, rendered with jinja2 the way Hugging Face renders it).

It tokenizes exactly as vLLM's OpenAI server does: completions with the tokenizer's special tokens, chat prompts
rendered by the template (generation prompt on) and tokenized without adding special tokens again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from runtime.router.requests.openai_request import OpenAiRequest


class TokenizerUnavailable(RuntimeError):
    pass


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


class PromptTokenizer:
    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        tokenizer_file = directory / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise TokenizerUnavailable(f"no tokenizer.json in {directory}")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        config: dict[str, Any] = {}
        config_file = directory / "tokenizer_config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: take "default"
            template = next((entry["template"] for entry in template if entry.get("name") == "default"), None)
        jinja_file = directory / "chat_template.jinja"
        if template is None and jinja_file.is_file():
            template = jinja_file.read_text(encoding="utf-8")
        self._special = {name: _token_text(config.get(name)) for name in ("bos_token", "eos_token", "pad_token")}
        self._template = None
        if template:
            environment = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
            )
            environment.globals["raise_exception"] = _raise
            self._template = environment.from_string(template)

    def tokens(self, request: OpenAiRequest) -> list[int]:
        if request.endpoint == "chat":
            return self._ids(self.render_chat(request), add_special_tokens=False)
        prompt = request.first_prompt  # a batch (served decode-only) is routed by its first prompt
        if isinstance(prompt, list):  # token ids, taken as they are (vLLM adds no special tokens to them)
            return prompt
        return self._ids(prompt, add_special_tokens=True)

    def _ids(self, text: str, add_special_tokens: bool) -> list[int]:
        # encode_batch_fast computes no character offsets: the same ids at about half the CPU of encode(), which
        # matters on the router's hot path (measured in bench/results/router_tokenize.md).
        return self._tokenizer.encode_batch_fast([text], add_special_tokens=add_special_tokens)[0].ids

    def render_chat(self, request: OpenAiRequest) -> str:
        if self._template is None:
            raise TokenizerUnavailable("the tokenizer has no chat template")
        body = request.body
        messages = [{**message, "content": _text_content(message.get("content"))} for message in request.messages]
        return self._template.render(
            messages=messages,
            add_generation_prompt=body.get("add_generation_prompt", True),
            tools=body.get("tools"),
            **self._special,
            **(body.get("chat_template_kwargs") or {}),
        )


def _token_text(token: object) -> str | None:
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None


def _text_content(content: object) -> object:
    """OpenAI content parts become the plain text vLLM gives string-format templates."""
    if isinstance(content, list):
        return "\n".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return content
