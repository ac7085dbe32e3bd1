"""Adds or overrides top-level fields of a JSON object without decoding and re-encoding the rest of it.

The new members are appended before the closing brace. A name the object already has then appears twice, and the
last one wins in the JSON decoders on both ends (Python's json, which vLLM's server and this router use).
"""

from __future__ import annotations

import json
from typing import Any


def with_fields(raw: bytes, fields: dict[str, Any]) -> bytes:
    body = raw.rstrip()
    if not body.endswith(b"}"):
        raise ValueError("not a JSON object")
    members = json.dumps(fields, separators=(",", ":")).encode()[1:-1]
    head = body[:-1].rstrip()
    separator = b"" if head.endswith(b"{") else b","
    return head + separator + members + b"}"
