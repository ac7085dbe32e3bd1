"""The serving namespace's NetworkPolicies, rendered from the deployment: who may open which port of which pod.

Ingress only. The namespace denies every ingress nobody named, then:
- an engine's HTTP port and KV-event ports: the router pods (it routes requests there and subscribes to the events);
- an engine's NIXL side-channel ports: the pods of the peer role (the NIXL handshake before a KV pull);
- every port of an engine, from pods of its own role, where a replica spans several nodes (the collectives and
  vLLM's data-parallel coordination between the nodes of one replica);
- the router's port (the OpenAI API and /metrics): the client networks the deployment names (required), the managed
  metrics collector's subnets, and ``workloads.router.metrics_scraper_cidrs`` if named;
- the router's port and decode's HTTP port (its /metrics): the pods of ``python -m infra smoke``'s Job;
- the engines' HTTP port (vLLM's /metrics, beside its OpenAI API): the managed metrics collector's subnets, and
  ``workloads.engine_metrics_scraper_cidrs`` (a scraper outside the VPC) if named.
The collector's subnets (infra/network/stack.py) hold no node, so no pod has an address in them: admitting them admits
the collector's ENIs alone. With the observability pipeline off there are none, and nothing is admitted in their stead.
The ports come from the serving section (``Role.port_ranges``: vLLM adds the data-parallel rank to the side-channel
and KV-event bases). The KV data itself moves over EFA RDMA, which bypasses the IP stack these policies filter.
The VPC CNI enforces them once its network-policy agent is on (infra/cluster/addons.py). Its agent always admits the
node's own IP, so kubelet probes pass (aws/aws-network-policy-agent PR #65).

Return traffic. A policy should admit the replies to connections a pod opened itself, but the agent tracks them in
its own conntrack cache, and long-lived flows lose their entry and then see their replies dropped as new ingress
(aws/aws-network-policy-agent issues #318 and #462, open; #175 names the workaround used here). So each pod admits,
on the local ephemeral ports its own connections come from, the peers it connects to:
- the router: the engines (its request streams and KV-event subscriptions), the VPC (the Kubernetes API endpoint it
  watches EndpointSlices through has its ENIs in the cluster's subnets), and everything outside the VPC (S3 and the
  Hugging Face hub, for the tokenizer);
- an engine: the pods of the peer role (the NIXL handshake it opens), and everything outside the VPC (the model
  download from S3 or the hub);
- the smoke Job's pods: the router and decode, which they call.
No pod listens on an ephemeral port (the config loader refuses a port there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.config import Deployment
from infra.operations.serving_endpoints import SMOKE_POD_LABELS
from infra.workload_names import EPHEMERAL_PORTS, labels, router_selector, selector
from infra.workloads.router_objects import router_metrics_port, router_port
from runtime.roles import Role

PEER: dict[Role, Role] = {"prefill": "decode", "decode": "prefill"}
EVERYWHERE = "0.0.0.0/0"


def _ports(ranges: list[range]) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for span in ranges:
        port: dict[str, Any] = {"protocol": "TCP", "port": span.start}
        if len(span) > 1:
            port["endPort"] = span.stop - 1
        ports.append(port)
    return ports


def _policy(
    deployment: Deployment, name: str, component: str, pods: dict[str, str], ingress: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": deployment.workloads.namespace,
            "labels": labels(deployment.name, component),
        },
        "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def default_deny(deployment: Deployment) -> dict[str, Any]:
    """Every pod of the namespace: no ingress unless a policy below admits it."""
    policy = _policy(deployment, "pdstack-default-deny-ingress", "network-policy", {}, [])
    policy["spec"]["podSelector"] = {}
    return policy


def _ip_blocks(cidrs: Sequence[str]) -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": cidr}} for cidr in dict.fromkeys(cidrs)]


def engine_policy(deployment: Deployment, role_name: Role, collector_cidrs: Sequence[str]) -> dict[str, Any]:
    role = deployment.serving.role(role_name)
    ranges = role.port_ranges()
    ingress: list[dict[str, Any]] = [
        {
            "from": [{"podSelector": {"matchLabels": router_selector(deployment.name)}}],
            "ports": _ports([ranges["http"], ranges["kv_events"]]),
        },
        {
            "from": [{"podSelector": {"matchLabels": selector(deployment.name, PEER[role_name])}}],
            "ports": _ports([ranges["nixl_side_channel"]]),
        },
    ]
    if role_name == "decode":  # the smoke test reads decode's KV-transfer counter from its /metrics
        ingress.append(
            {"from": [{"podSelector": {"matchLabels": SMOKE_POD_LABELS}}], "ports": _ports([ranges["http"]])}
        )
    scrapers = [*collector_cidrs, *deployment.workloads.engine_metrics_scraper_cidrs]
    if scrapers:
        ingress.append({"from": _ip_blocks(scrapers), "ports": _ports([ranges["http"]])})
    if role.nodes_per_replica > 1:
        ingress.append({"from": [{"podSelector": {"matchLabels": selector(deployment.name, role_name)}}]})
    return _policy(deployment, f"pdstack-{role_name}-ingress", role_name, selector(deployment.name, role_name), ingress)


def router_policy(deployment: Deployment, collector_cidrs: Sequence[str]) -> dict[str, Any]:
    """Clients to the API port; the collector and the named scrapers to the metrics port (the same port when
    ``serving.router.metrics_port`` is None); the smoke Job to both."""
    workload = deployment.workloads.router
    clients = workload.allowed_client_cidrs or []  # required: the config check refuses None
    scrapers = [*collector_cidrs, *(workload.metrics_scraper_cidrs or [])]
    smoke = {"podSelector": {"matchLabels": SMOKE_POD_LABELS}}
    if router_metrics_port(deployment) == router_port(deployment):
        rules = [
            {
                "from": [*_ip_blocks([*clients, *scrapers]), smoke],
                "ports": [{"protocol": "TCP", "port": router_port(deployment)}],
            }
        ]
    else:
        rules = [
            {"from": [*_ip_blocks(clients), smoke], "ports": [{"protocol": "TCP", "port": router_port(deployment)}]},
            {
                "from": [*_ip_blocks(scrapers), smoke],
                "ports": [{"protocol": "TCP", "port": router_metrics_port(deployment)}],
            },
        ]
    return _policy(deployment, "pdstack-router-ingress", "router", router_selector(deployment.name), rules)


def _outside(deployment: Deployment) -> dict[str, Any]:
    return {"ipBlock": {"cidr": EVERYWHERE, "except": deployment.network.vpc_cidrs}}


def return_traffic_policies(deployment: Deployment) -> list[dict[str, Any]]:
    """Replies to the connections each pod opens, admitted on its ephemeral ports (see the module's docstring)."""
    ephemeral = _ports([EPHEMERAL_PORTS])
    engines = [{"podSelector": {"matchLabels": selector(deployment.name, role)}} for role in ("prefill", "decode")]
    policies = [
        _policy(
            deployment,
            "pdstack-router-return-traffic",
            "router",
            router_selector(deployment.name),
            [
                {
                    "from": [*engines, *_ip_blocks(deployment.network.vpc_cidrs), _outside(deployment)],
                    "ports": ephemeral,
                }
            ],
        )
    ]
    for role_name in ("prefill", "decode"):
        policies.append(
            _policy(
                deployment,
                f"pdstack-{role_name}-return-traffic",
                role_name,
                selector(deployment.name, role_name),
                [
                    {
                        "from": [
                            {"podSelector": {"matchLabels": selector(deployment.name, PEER[role_name])}},
                            _outside(deployment),
                        ],
                        "ports": ephemeral,
                    }
                ],
            )
        )
    policies.append(
        _policy(
            deployment,
            "pdstack-smoke-return-traffic",
            "network-policy",
            SMOKE_POD_LABELS,
            [
                {
                    "from": [
                        {"podSelector": {"matchLabels": router_selector(deployment.name)}},
                        {"podSelector": {"matchLabels": selector(deployment.name, "decode")}},
                    ],
                    "ports": ephemeral,
                }
            ],
        )
    )
    return policies


def network_policies(deployment: Deployment, collector_cidrs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``collector_cidrs``: the managed collector's subnets (the network stack's ``collector_cidrs``)."""
    return [
        default_deny(deployment),
        engine_policy(deployment, "prefill", collector_cidrs),
        engine_policy(deployment, "decode", collector_cidrs),
        router_policy(deployment, collector_cidrs),
        *return_traffic_policies(deployment),
    ]
