"""The serving image: its base (the engine pin by default), the ECR repository and the ghcr.io pull-through cache."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from infra.config.common import Strict
from runtime import engine_pin

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PTC_SECRET = re.compile(r"^arn:aws[a-zA-Z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:ecr-pullthroughcache/.+$")
_ECR_NAME = r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"


class PullThroughCache(Strict):
    """An ECR pull-through cache rule for ghcr.io, so CodeBuild pulls the base image through the account's ECR.

    A rule's repository prefix is unique per account and region (CreatePullThroughCacheRule fails with
    PullThroughCacheRuleAlreadyExistsException): each deployment gets its own (``<deployment>-ghcr`` unless
    ``repository_prefix`` names one), or adopts an existing rule (``create_rule: false`` with that rule's prefix)."""

    enabled: bool = False
    # A Secrets Manager secret holding a GitHub user name and token; ECR only reads secrets so prefixed.
    credential_secret_arn: str | None = None
    # ECR: 2-30 characters, lower-case letters, digits, . _ - and / (CreatePullThroughCacheRule, ecrRepositoryPrefix).
    repository_prefix: str | None = Field(default=None, min_length=2, max_length=30, pattern=_ECR_NAME)
    create_rule: bool = Field(
        default=True,
        description="false: use the existing rule of repository_prefix (not created, not deleted with the stack)",
    )

    @model_validator(mode="after")
    def _secret(self) -> PullThroughCache:
        if not self.create_rule and self.repository_prefix is None:
            raise ValueError("create_rule: false adopts an existing rule: name its repository_prefix")
        if self.enabled and self.create_rule and self.credential_secret_arn is None:
            raise ValueError("enabled=true needs credential_secret_arn (ghcr.io requires credentials for the cache)")
        arn = self.credential_secret_arn
        if arn is not None and not _PTC_SECRET.match(arn):
            raise ValueError(
                f"credential_secret_arn={arn!r} must be a Secrets Manager secret ARN whose name starts with "
                "'ecr-pullthroughcache/' (ECR only reads secrets so named)"
            )
        return self

    def prefix(self, deployment_name: str) -> str:
        """The rule's repository prefix: as configured, else one of this deployment's own."""
        return self.repository_prefix or f"{deployment_name}-ghcr"


class ImageConfig(Strict):
    # The base defaults to the engine pin (runtime/engine_pin.py: the image, its vLLM and NIXL, and where each was
    # read). A base_digest, once a build has printed it, makes the build refuse any other image under that tag;
    # without one the build records the digest it resolved and checks the engine versions inside the base.
    base_repository: str = engine_pin.BASE_REPOSITORY
    base_tag: str = Field(default=engine_pin.BASE_TAG, pattern=r"^[\w][\w.-]{0,127}$")
    base_digest: str | None = engine_pin.BASE_DIGEST
    # None: <deployment name>/serving. A repository name is unique per account and region; the repository is removed
    # with the image stack (images included: each is rebuilt from source on the next deploy).
    ecr_repository: str | None = Field(default=None, pattern=_ECR_NAME)
    pull_through_cache: PullThroughCache = PullThroughCache()

    @field_validator("base_digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not _DIGEST.match(value):
            raise ValueError(f"{value!r} is not a sha256 digest (sha256: followed by 64 lower-case hex digits)")
        return value

    @model_validator(mode="after")
    def _cacheable(self) -> ImageConfig:
        if self.pull_through_cache.enabled and not self.base_repository.startswith("ghcr.io/"):
            raise ValueError(
                f"pull_through_cache is for ghcr.io images; base_repository={self.base_repository!r} is elsewhere"
            )
        return self

    def repository_name(self, deployment_name: str) -> str:
        return self.ecr_repository or f"{deployment_name}/serving"

    @property
    def base_image(self) -> str:
        """The base image reference: repository:tag, and @digest when one is pinned."""
        reference = f"{self.base_repository}:{self.base_tag}"
        return f"{reference}@{self.base_digest}" if self.base_digest else reference
