"""Where the serving workloads live in the cluster, as the operations commands see them from outside.

The defaults are those infra/workloads/stack.py renders for a default deployment: the schema's default namespace
(infra/config/workloads.py), the Services named in infra/workload_names.py (the router's and decode's engines
Service) on port 8000.
tests/infra/operations/test_alignment.py checks them against the rendered objects and the router's metric names
against what it exports. Every name is also a command-line option of ``smoke``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from infra.config.workloads import WorkloadsConfig
from infra.workload_names import ROUTER, engines_service_name
from runtime.router.contract import DECISIONS

# Kubernetes object names: DNS-1123 labels.
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

# The smoke Job's pods: the serving namespace's NetworkPolicies (infra/workloads/network_policies.py) admit them to the
# router's port and to decode's HTTP port, whose /metrics the Job reads.
SMOKE_POD_LABELS = {"app.kubernetes.io/name": "pdstack-smoke", "app.kubernetes.io/managed-by": "pdstack"}

# Prometheus counters the smoke test reads before and after its request.
# The router counts its prefill/decode decisions; the label says which way a request went.
ROUTER_PD_DECISIONS = f"{DECISIONS}_total"  # prometheus_client appends _total to a counter's name
ROUTER_DISAGGREGATED_LABEL = 'decision="pd"'
# vLLM's NIXL connector counts KV transfers on the decode side (one histogram sample per transfer).
DECODE_KV_TRANSFERS = "vllm:nixl_xfer_time_seconds_count"


class ServingEndpoints(BaseModel):
    """The router and decode Services the smoke Job talks to, inside the cluster."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(default=WorkloadsConfig().namespace, pattern=_DNS_LABEL)
    router_service: str = Field(default=ROUTER, pattern=_DNS_LABEL)
    router_port: int = Field(default=8000, ge=1, le=65535)
    router_metrics_port: int = Field(
        default=9090,
        ge=1,
        le=65535,
        description="the router's /metrics port (serving.router.metrics_port; the API port when that is None)",
    )
    decode_service: str = Field(default=engines_service_name("decode"), pattern=_DNS_LABEL)
    decode_port: int = Field(default=8000, ge=1, le=65535)

    @property
    def router_url(self) -> str:
        return f"http://{self.router_service}.{self.namespace}.svc:{self.router_port}"

    @property
    def router_metrics_url(self) -> str:
        return f"http://{self.router_service}.{self.namespace}.svc:{self.router_metrics_port}"

    @property
    def decode_url(self) -> str:
        return f"http://{self.decode_service}.{self.namespace}.svc:{self.decode_port}"
