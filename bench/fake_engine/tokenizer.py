"""The simulated engine's own tokenization, the way vLLM 0.32 does it and from the same model files, with Hugging
Face ``transformers`` (as vLLM does), never the router's code, so a router/engine disagreement shows in the bench:

- completions (vllm/entrypoints/openai/completion/protocol.py): a text prompt is ``tokenizer(prompt,
  add_special_tokens=request.add_special_tokens)`` (default True); a prompt of token ids is taken as it is;
- chat (vllm/renderers/hf.py ``safe_apply_chat_template``): OpenAI content parts become their text joined by "\\n"
  (the "string" content format), then ``tokenizer.apply_chat_template(conversation, tokenize=True,
  return_dict=False, add_generation_prompt=..., continue_final_message=..., tools=..., **chat_template_kwargs)``
  (add_generation_prompt defaults to True); the template adds any special tokens, nothing else does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# transformers advises at import that PyTorch is missing: the tokenizer needs no torch, so the advice is noise.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
from transformers import AutoTokenizer


class EngineTokenizer:
    def __init__(self, model: str | Path) -> None:
        self._tokenizer = AutoTokenizer.from_pretrained(str(model))

    def tokens(self, chat: bool, body: dict[str, Any]) -> list[int]:
        """The prompt token ids of one completions (``chat`` False) or chat request body."""
        if chat:
            return self._chat(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            prompt = prompt[0]  # a batch: the simulator serves its first prompt
        if isinstance(prompt, list):
            return list(prompt)
        encoded = self._tokenizer(str(prompt), add_special_tokens=body.get("add_special_tokens", True))
        return list(encoded["input_ids"])

    def _chat(self, body: dict[str, Any]) -> list[int]:
        conversation = [{**message, "content": _text(message.get("content"))} for message in body.get("messages", [])]
        ids = self._tokenizer.apply_chat_template(
            conversation,
            tools=body.get("tools"),
            tokenize=True,
            return_dict=False,
            add_generation_prompt=body.get("add_generation_prompt", True),
            continue_final_message=body.get("continue_final_message", False),
            **(body.get("chat_template_kwargs") or {}),
        )
        return list(ids)


def _text(content: Any) -> Any:
    """vLLM's "string" content format: the text parts of a message, joined by a newline."""
    if isinstance(content, list):
        return "\n".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return content
