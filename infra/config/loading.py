"""Reading a deployment file: YAML in, a validated ``Deployment`` out, or a ``DeploymentError`` whose message names
each field, its value and what would be valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from infra.config.deployment import Deployment


class DeploymentError(Exception):
    """A deployment file that cannot be used; the message is meant for the person who wrote it."""


def _describe(error: ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-after"))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key (not part of the deployment schema; check its spelling and indentation)"
    if error["type"] in ("missing", "union_tag_not_found"):
        return f"{location}: {message.lower()}"
    shown = error.get("input")
    if isinstance(shown, (dict, list)) or repr(shown) in message:
        return f"{location or '(top level)'}: {message}"
    return f"{location or '(top level)'}: {message} (got {shown!r})"


def parse_deployment(data: Any, source: str = "<deployment>") -> Deployment:
    """Validate already-parsed YAML; raise DeploymentError with one line per problem."""
    try:
        return Deployment.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: invalid deployment"] + [f"  - {_describe(e)}" for e in exc.errors()]
        raise DeploymentError("\n".join(lines)) from None


def load_deployment(path: str | Path) -> Deployment:
    """Read and validate a deployment file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeploymentError(f"{path}: cannot read the deployment file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeploymentError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DeploymentError(f"{path}: the deployment file must be a YAML mapping at the top level")
    return parse_deployment(data, str(path))
