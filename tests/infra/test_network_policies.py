"""The serving namespace's NetworkPolicies, evaluated the way Kubernetes does against the pods pdstack renders.

A connection from a source to a pod on a port is admitted when the pod is selected by no Ingress policy, or when one
rule of one policy selecting it names the source (pod labels or IP) and the port. Every port a peer needs comes from
the serving section (``Role.port_ranges``, the ranges vLLM listens on), never from the policies themselves.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import kubernetes_validate
import pytest

from infra.config import Deployment, DeploymentError, parse_deployment
from tests.support.network_policy import Source, admitted, rendered, selects, selects_pod, smoke_job, with_router
from tests.support.synthesis import Synthesized, load_yaml, wide_ep_decode


def default() -> Deployment:
    return parse_deployment(load_yaml("default.yaml"))


@pytest.mark.parametrize("make", [default, wide_ep_decode], ids=["default", "wide-ep"])
def test_every_policy_selects_pods_that_exist_and_every_pod_is_selected(make: Any) -> None:
    policies, pods = rendered(make())
    for policy in policies:
        assert any(selects_pod(policy, labels) for labels in pods.values()), policy["metadata"]["name"]
        for rule in policy["spec"]["ingress"]:
            for peer in rule.get("from", []):
                if "podSelector" in peer:
                    assert any(selects(peer["podSelector"], labels) for labels in pods.values()), peer
    for name, labels in pods.items():
        if name.startswith("pdstack-smoke"):
            continue  # a client: nothing connects to it
        # each serving pod has a policy that admits something, beyond the namespace's default deny
        assert any(selects_pod(p, labels) and p["spec"]["ingress"] for p in policies), name


@pytest.mark.parametrize("make", [default, wide_ep_decode], ids=["default", "wide-ep"])
def test_the_router_reaches_every_engine_port_it_uses(make: Any) -> None:
    deployment = make()
    policies, pods = rendered(deployment)
    router = Source(labels=pods["pdstack-router"])
    for role_name in ("prefill", "decode"):
        ranges = deployment.serving.role(role_name).port_ranges()
        for name, labels in pods.items():
            if labels.get("llm-d.ai/role") != role_name:
                continue
            for port in [*ranges["http"], *ranges["kv_events"]]:
                assert admitted(policies, router, labels, port), (name, port)


@pytest.mark.parametrize("make", [default, wide_ep_decode], ids=["default", "wide-ep"])
def test_each_role_reaches_the_side_channel_of_the_other_and_nothing_else(make: Any) -> None:
    deployment = make()
    policies, pods = rendered(deployment)
    by_role = {
        role: [labels for labels in pods.values() if labels.get("llm-d.ai/role") == role]
        for role in ("prefill", "decode")
    }
    for role, peer in (("prefill", "decode"), ("decode", "prefill")):
        ranges = deployment.serving.role(role).port_ranges()
        for target in by_role[role]:
            for source in by_role[peer]:
                for port in ranges["nixl_side_channel"]:
                    assert admitted(policies, Source(labels=source), target, port), (peer, role, port)
                for port in [*ranges["http"], *ranges["kv_events"]]:
                    assert not admitted(policies, Source(labels=source), target, port), (peer, role, port)


@pytest.mark.parametrize("make", [default, wide_ep_decode], ids=["default", "wide-ep"])
def test_the_policies_are_valid_kubernetes(make: Any) -> None:
    policies, _ = rendered(make())
    for policy in policies:
        kubernetes_validate.validate(policy, "1.35", strict=True)
    ranges = [
        p
        for policy in policies
        for rule in policy["spec"]["ingress"]
        for p in rule.get("ports", [])
        if "endPort" in p and p["port"] < 32768
    ]  # beside the reply ports every pod admits
    assert bool(ranges) == (make is wide_ep_decode)  # 16 data-parallel ranks: side-channel and KV-event ranges


def test_nodes_of_one_multi_node_replica_reach_each_other() -> None:
    deployment = wide_ep_decode()
    policies, pods = rendered(deployment)
    leader, worker = pods["pdstack-decode/leaderTemplate"], pods["pdstack-decode/workerTemplate"]
    for port in [*deployment.serving.decode.port_ranges()["dp_rpc"], 29500]:  # 29500: a collective's bootstrap
        assert admitted(policies, Source(labels=worker), leader, port)
    prefill = pods["pdstack-prefill"]  # a single-node role: no traffic from its own kind
    assert not admitted(policies, Source(labels=prefill), prefill, deployment.serving.prefill.ports.http)


def test_any_other_pod_or_address_is_refused_by_the_engines() -> None:
    deployment = default()
    policies, pods = rendered(deployment)
    stranger = Source(labels={"app.kubernetes.io/name": "debug-shell"})
    inside_vpc = Source(ip="10.0.3.7")
    for role in ("prefill", "decode"):
        target = pods[f"pdstack-{role}"]
        for port in [p for span in deployment.serving.role(role).port_ranges().values() for p in span]:
            assert not admitted(policies, stranger, target, port)
            assert not admitted(policies, inside_vpc, target, port)


def test_the_router_admits_the_vpc_by_default_on_its_port_only() -> None:
    deployment = default()
    policies, pods = rendered(deployment)
    router = pods["pdstack-router"]
    port = deployment.serving.router.port
    vpc = ipaddress.ip_network(deployment.network.cidr)
    assert admitted(policies, Source(ip=str(vpc[7])), router, port)
    assert not admitted(policies, Source(ip="192.0.2.10"), router, port)
    assert not admitted(policies, Source(ip=str(vpc[7])), router, port + 1)


def test_the_smoke_job_reaches_the_router_and_decode_metrics_whatever_the_client_networks() -> None:
    deployment = with_router(allowed_client_cidrs=["172.20.0.0/16"])
    policies, pods = rendered(deployment)
    job = Source(labels=pods["pdstack-smoke-test"])
    env = {e["name"]: e["value"] for e in smoke_job(deployment)["spec"]["template"]["spec"]["containers"][0]["env"]}
    router_port, decode_port = (int(env[name].rsplit(":", 1)[1]) for name in ("ROUTER_URL", "DECODE_URL"))
    assert admitted(policies, job, pods["pdstack-router"], router_port)
    assert admitted(policies, job, pods["pdstack-decode"], decode_port)
    assert not admitted(policies, job, pods["pdstack-prefill"], deployment.serving.prefill.ports.http)
    assert not admitted(policies, job, pods["pdstack-decode"], deployment.serving.decode.ports.nixl_side_channel)


def test_an_extra_engine_scraper_reaches_the_http_port_alone_and_only_when_named() -> None:
    data = load_yaml("default.yaml")
    data["workloads"]["engine_metrics_scraper_cidrs"] = ["192.168.40.0/24"]  # outside the VPC: config.py insists
    deployment = parse_deployment(data)
    policies, pods = rendered(deployment)
    scraper = Source(ip="192.168.40.7")
    for role in ("prefill", "decode"):
        ranges = deployment.serving.role(role).port_ranges()
        assert admitted(policies, scraper, pods[f"pdstack-{role}"], ranges["http"].start)
        for port in [*ranges["kv_events"], *ranges["nixl_side_channel"]]:
            assert not admitted(policies, scraper, pods[f"pdstack-{role}"], port)
    default_policies, _ = rendered(default())
    assert not admitted(default_policies, scraper, pods["pdstack-decode"], deployment.serving.decode.ports.http)


def test_named_clients_and_scrapers_replace_the_vpc_default() -> None:
    deployment = with_router(allowed_client_cidrs=["172.20.0.0/16"], metrics_scraper_cidrs=["192.168.40.0/24"])
    policies, pods = rendered(deployment)
    router, port = pods["pdstack-router"], deployment.serving.router.port
    metrics_port = deployment.serving.router.metrics_port
    assert metrics_port is not None  # its own port, so that "not admitted there" means something
    assert admitted(policies, Source(ip="172.20.9.9"), router, port)
    assert not admitted(policies, Source(ip="172.20.9.9"), router, metrics_port)  # clients: the API alone
    assert admitted(policies, Source(ip="192.168.40.7"), router, metrics_port)  # the extra scraper: /metrics alone
    assert not admitted(policies, Source(ip="192.168.40.7"), router, port)
    for elsewhere in (port, metrics_port):  # elsewhere in the VPC
        assert not admitted(policies, Source(ip="10.0.1.1"), router, elsewhere)


@pytest.mark.parametrize(
    ("cidrs", "message"),
    [
        (["10.0.0.1/16"], "is not a CIDR block"),
        (["0.0.0.0/0"], "lets every address reach the router"),
        ([], "at least 1 item"),
    ],
)
def test_client_cidrs_are_validated(cidrs: list[str], message: str) -> None:
    with pytest.raises(DeploymentError, match=message) as caught:
        with_router(allowed_client_cidrs=cidrs)
    assert "workloads.router.allowed_client_cidrs" in str(caught.value)


def test_the_evaluator_refuses_what_no_rule_admits() -> None:
    """The evaluator itself: a policy with one rule admits that rule's source and port and nothing else."""
    policy = {
        "spec": {
            "podSelector": {"matchLabels": {"a": "1"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"b": "1"}}}],
                    "ports": [{"protocol": "TCP", "port": 10, "endPort": 12}],
                }
            ],
        }
    }
    assert admitted([policy], Source(labels={"b": "1"}), {"a": "1"}, 12)
    assert not admitted([policy], Source(labels={"b": "1"}), {"a": "1"}, 13)
    assert not admitted([policy], Source(labels={"c": "1"}), {"a": "1"}, 10)
    assert admitted([policy], Source(labels={"c": "1"}), {"z": "1"}, 10)  # not selected: open


def test_vpc_cni_enforces_network_policies(default: Synthesized) -> None:
    """vpc-cni v1.20.4's chart values (the add-on's configuration schema): ``enableNetworkPolicy`` is a string that
    the node agent's ``--enable-network-policy`` reads, ``nodeAgent.enabled`` a boolean that runs the agent."""
    addons = default.cluster.find_resources("AWS::EKS::Addon", {"Properties": {"AddonName": "vpc-cni"}})
    (addon,) = addons.values()
    values = json.loads(addon["Properties"]["ConfigurationValues"])
    assert values["enableNetworkPolicy"] == "true"
    assert values["nodeAgent"]["enabled"] is True


# Replies to connections the pods open arrive on the opener's ephemeral ports (Linux's ip_local_port_range).
REPLY_PORTS = (32768, 45000, 60999)


@pytest.mark.parametrize("make", [default, wide_ep_decode], ids=["default", "wide-ep"])
def test_replies_to_the_connections_each_pod_opens_are_admitted(make: Any) -> None:
    """The network-policy agent drops replies of long-lived flows whose conntrack entry it lost
    (aws/aws-network-policy-agent #318, #462): each pod admits, on its ephemeral ports, whom it connects to."""
    deployment = make()
    policies, pods = rendered(deployment)
    router = pods["pdstack-router"]
    engines = {name: labels for name, labels in pods.items() if "llm-d.ai/role" in labels}
    outside = Source(ip="52.216.8.1")  # an S3 address: the model and tokenizer downloads
    api_server = Source(ip=str(ipaddress.ip_network(deployment.network.cidr)[70]))  # an ENI in the VPC
    for port in REPLY_PORTS:
        for labels in engines.values():  # request streams and KV-event subscriptions the router opened
            assert admitted(policies, Source(labels=labels), router, port)
        assert admitted(policies, api_server, router, port)  # the EndpointSlice watch
        assert admitted(policies, outside, router, port)
        for name, labels in engines.items():
            assert admitted(policies, outside, labels, port), name
            peer_role = {"prefill": "decode", "decode": "prefill"}[labels["llm-d.ai/role"]]
            peers = [p for p in engines.values() if p["llm-d.ai/role"] == peer_role]
            assert all(admitted(policies, Source(labels=p), labels, port) for p in peers), name
        smoke = pods["pdstack-smoke-test"]
        assert admitted(policies, Source(labels=router), smoke, port)
        assert admitted(
            policies,
            Source(
                labels=pods["pdstack-decode"] if "pdstack-decode" in pods else pods["pdstack-decode/leaderTemplate"]
            ),
            smoke,
            port,
        )


def test_the_reply_ports_admit_no_stranger_inside_the_vpc() -> None:
    deployment = default()
    policies, pods = rendered(deployment)
    inside = Source(ip=str(ipaddress.ip_network(deployment.network.cidr)[70]))
    stranger = Source(labels={"app.kubernetes.io/name": "debug-shell"})
    for role in ("prefill", "decode"):
        for port in REPLY_PORTS:
            assert not admitted(policies, inside, pods[f"pdstack-{role}"], port)
            assert not admitted(policies, stranger, pods[f"pdstack-{role}"], port)
    assert not admitted(policies, Source(ip="52.216.8.1"), pods["pdstack-router"], deployment.serving.router.port + 1)


def test_a_listening_port_in_the_ephemeral_range_is_refused() -> None:
    data = load_yaml("default.yaml")
    data["serving"]["decode"] = {**data["serving"]["decode"], "ports": {"kv_events": 40000}}
    with pytest.raises(DeploymentError, match=r"serving\.decode\.ports\.kv_events .* ephemeral port range"):
        parse_deployment(data)


def test_the_router_clients_must_be_stated() -> None:
    """The OpenAI API is not opened to the whole VPC by default: the deployment names its clients' networks."""
    data = load_yaml("default.yaml")
    del data["workloads"]["router"]["allowed_client_cidrs"]
    with pytest.raises(DeploymentError, match=r"workloads.router.allowed_client_cidrs is required.*10.0.0.0/16"):
        parse_deployment(data)


def test_every_block_of_an_existing_vpc_is_the_vpc() -> None:
    """Review finding 6: with pods in a secondary block (100.64.0.0/16), the router's reply ports admit the VPC's
    every block, and the engines' 'outside the VPC' excludes every block (a pod there is no stranger to let in)."""
    data = load_yaml("existing-cluster.yaml")
    data["network"]["existing"]["secondary_cidrs"] = ["100.64.0.0/16"]
    deployment = parse_deployment(data)
    policies, pods = rendered(deployment)
    pod_in_secondary = Source(ip="100.64.7.9")
    for port in REPLY_PORTS:
        assert admitted(policies, pod_in_secondary, pods["pdstack-router"], port)
        for role in ("prefill", "decode"):
            assert not admitted(policies, pod_in_secondary, pods[f"pdstack-{role}"], port)
            assert admitted(policies, Source(ip="52.216.8.1"), pods[f"pdstack-{role}"], port)
