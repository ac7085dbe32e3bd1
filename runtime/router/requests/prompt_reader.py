"""Turns a request into its prompt blocks: the model's tokens when a tokenizer is loaded, character blocks else."""

from __future__ import annotations

from runtime.json_log import EventLog
from runtime.router.prefix_cache.prompt_blocks import PromptBlocks, character_blocks, token_blocks
from runtime.router.requests.openai_request import OpenAiRequest
from runtime.router.requests.prompt_tokenizer import PromptTokenizer

log = EventLog("runtime.router.prompt")


class PromptReader:
    def __init__(self, block_size: int, tokenizer: PromptTokenizer | None) -> None:
        self.block_size = block_size
        self.tokenizer = tokenizer

    def blocks(self, request: OpenAiRequest) -> PromptBlocks:
        if request.endpoint == "completions" and isinstance(request.first_prompt, list):
            return token_blocks(request.first_prompt, self.block_size)  # token ids need no tokenizer
        if self.tokenizer is not None:
            try:
                return token_blocks(self.tokenizer.tokens(request), self.block_size)
            except Exception as error:  # a template or prompt the tokenizer cannot take: route by characters
                log.warning("tokenize_failed", reason=str(error)[:200])
        return character_blocks(prompt_text(request), self.block_size)


def prompt_text(request: OpenAiRequest) -> str:
    if request.endpoint == "chat":
        parts = []
        for message in request.messages:
            content = message.get("content")
            if isinstance(content, list):
                content = "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            parts.append(f"{message.get('role')}\n{content or ''}\n")
        return "".join(parts)
    prompt = request.first_prompt
    return prompt if isinstance(prompt, str) else ""
