"""How the serving workloads are laid on the cluster: namespace, the router's workload (replicas, load balancer,
client networks, API keys, shutdown) and the workers' pod settings."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from infra.config.common import Strict, check_cidrs

# A Secrets Manager secret by full ARN (Secrets Manager appends a hyphen and six characters to the name) or by name
# (Secrets Manager API reference, CreateSecret Name: 1-512 of letters, digits and /_+=.@-).
_SECRET_ARN = r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}"
_SECRET_NAME = r"[A-Za-z0-9/_+=.@-]{1,512}"
_KMS_KEY_ARN = r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$"


class RouterWorkload(Strict):
    replicas: int = Field(default=2, ge=1, le=20)
    internal_load_balancer: bool = Field(
        default=False,
        description="an internal NLB (AWS Load Balancer Controller, IP targets, TLS on 443) in front of the routers",
    )
    # The ACM certificate of the NLB's TLS listener: required when internal_load_balancer is on (no plain-text
    # listener).
    certificate_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$"
    )
    cpu: str = "2"
    memory: str = "4Gi"
    # Who may open the router's port (its NetworkPolicy): required (the deployment check refuses None), so that
    # nobody exposes the OpenAI API to the whole VPC (every pod of every team) without having said so.
    allowed_client_cidrs: list[str] | None = Field(default=None, min_length=1)
    # Who else may scrape its /metrics (serving.router.metrics_port), beside the managed collector's subnets, which
    # the policy admits whenever the observability pipeline is on: e.g. a Prometheus outside the VPC. None: nobody.
    metrics_scraper_cidrs: list[str] | None = Field(default=None, min_length=1)

    # API-key authentication in the cluster: the AWS Secrets Manager secret (its name, or its full ARN with the
    # six-character suffix Secrets Manager appends) whose value holds the keys, one per line. The router pods mount it
    # read-only through the Secrets Store CSI driver and its AWS provider; serving.router.api_keys_path is rendered
    # to the mount. None: no authentication.
    api_keys_secret: str | None = None
    # The customer managed KMS key the secret is encrypted with, if any: the routers may decrypt with it through
    # Secrets Manager only. None: the secret uses the AWS managed key aws/secretsmanager (no grant needed).
    api_keys_kms_key_arn: str | None = Field(default=None, pattern=_KMS_KEY_ARN)

    @field_validator("api_keys_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is None or re.fullmatch(_SECRET_ARN, value):
            return value
        if value.startswith("arn:"):
            raise ValueError(
                f"{value!r} is not a whole Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:"
                "<account>:secret:<name>-<6 characters>); give the full ARN, or the secret's name"
            )
        if not re.fullmatch(_SECRET_NAME, value):
            raise ValueError(f"{value!r} is not a Secrets Manager secret name (1-512 of letters, digits and /_+=.@-)")
        return value

    @field_validator("allowed_client_cidrs", "metrics_scraper_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_cidrs(value, "10.20.0.0/16", "lets every address reach the router")

    prestop_s: int = Field(
        default=5,
        ge=0,
        le=60,
        description="a stopping pod keeps serving this long before its "
        "SIGTERM, while kube-proxy and load balancers drop it from their endpoints",
    )
    termination_grace_s: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="the pod's terminationGracePeriodSeconds; "
        "prestop_s plus serving.router.shutdown_grace_s must fit below it",
    )


class WorkloadsConfig(Strict):
    """How the serving workloads are laid on the cluster (the serving section says what they run)."""

    namespace: str = Field(default="pdstack", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    router: RouterWorkload = RouterWorkload()
    shm_gib: int = Field(default=20, ge=1, le=512, description="memory-backed /dev/shm of each worker pod")
    hugepages_2mi: str = Field(default="5120Mi", pattern=r"^\d+(Mi|Gi)$", description="EFA pre-allocates these")
    startup_minutes: int = Field(default=40, ge=5, le=240, description="how long a worker may take to load the model")
    # Networks admitted to the engines' HTTP port (vLLM serves /metrics there, next to the OpenAI API) beside the
    # managed collector's own subnets (admitted whenever the observability pipeline is on): for a scraper outside
    # the VPC. A CIDR of the pods' subnets would open the engines' API to every pod there; name it knowingly.
    engine_metrics_scraper_cidrs: list[str] = Field(default_factory=list)
    # An s3:// model under SSE-KMS: the readers may decrypt with this key only. None: with any key, but only through
    # S3 and only for objects of the model's bucket (kms:ViaService and the aws:s3:arn encryption context).
    model_kms_key_arn: str | None = Field(default=None, pattern=_KMS_KEY_ARN)

    @field_validator("engine_metrics_scraper_cidrs")
    @classmethod
    def _scraper_cidrs(cls, value: list[str]) -> list[str]:
        return check_cidrs(value, "10.0.64.0/19", "lets every address reach the engines")
