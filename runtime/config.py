"""The serving configuration: the ``serving`` section of a deployment file, read by the runtime in every pod.

Minimal for now (the runtime issue completes it). ``infra`` imports this schema to validate and render it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.catalog import INSTANCE_CATALOG


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Model(_Strict):
    source: str = Field(min_length=1, description="local path, s3:// URI or Hugging Face id")
    served_name: str = Field(min_length=1)


class Role(_Strict):
    instance_type: str = "p5.48xlarge"
    replicas: int = Field(default=1, ge=0)
    tensor_parallel: int = Field(default=1, ge=1)


class Serving(_Strict):
    model: Model
    prefill: Role = Role()
    decode: Role = Role()

    def instance_types(self) -> set[str]:
        return {self.prefill.instance_type, self.decode.instance_type}


__all__ = ["INSTANCE_CATALOG", "Model", "Role", "Serving"]
