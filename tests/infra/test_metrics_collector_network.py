"""The managed metrics collector's own subnets, read from the synthesized templates: the scraper sits in them alone,
no node (and so no pod: the VPC CNI gives pods their node's subnet) lives in them, and the serving NetworkPolicies
admit exactly their addresses on the ports the collector scrapes, and nothing for them when the pipeline is off.

The collector's subnets are found from the scraper's SubnetIds (cross-stack imports resolved to the network stack's
subnets), never from the constants that built them.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import parse_deployment
from infra.workloads.stack import serving_objects
from runtime.roles import Role
from tests.support.network_policy import Source, admitted, pod_templates, smoke_job, with_router
from tests.support.synthesis import SHIPPED, SynthesisCache, Synthesized, load_yaml
from tests.support.workload_objects import IMAGE

ENGINES: tuple[Role, ...] = ("prefill", "decode")


def _references(node: Any) -> set[str]:
    """Every Ref target and Fn::ImportValue export name anywhere under ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("Ref", "Fn::ImportValue") and isinstance(value, str):
                found.add(value)
            else:
                found |= _references(value)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


def _strings(node: Any) -> set[str]:
    if isinstance(node, str):
        return {node}
    values = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return {text for value in values for text in _strings(value)}


def network_subnets(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """The network stack's subnets by logical id; an existing VPC's, as the file names them, by subnet id."""
    existing = synth.deployment.network.existing
    if existing is not None:
        return {
            s.id: {"CidrBlock": s.cidr, "AvailabilityZone": s.availability_zone}
            for s in (*existing.private_subnets, *existing.collector_subnets)
        }
    return {k: v["Properties"] for k, v in synth.network.find_resources("AWS::EC2::Subnet").items()}


def subnets_referenced(synth: Synthesized, node: Any) -> set[str]:
    """The network stack's subnets ``node`` names, directly (Ref) or through the network stack's exports; an
    existing VPC's by their ids."""
    if synth.network is None:
        return _strings(node) & set(network_subnets(synth))
    exports = {
        o["Export"]["Name"]: o["Value"].get("Ref")
        for o in synth.network.to_json().get("Outputs", {}).values()
        if "Export" in o and isinstance(o["Value"], dict)
    }
    subnets = network_subnets(synth)
    return {name for name in (exports.get(r, r) for r in _references(node)) if name in subnets}


def scraper_subnets(synth: Synthesized) -> set[str]:
    assert synth.observability is not None
    (scraper,) = synth.observability.find_resources("AWS::APS::Scraper").values()
    subnet_ids = scraper["Properties"]["Source"]["EksConfiguration"]["SubnetIds"]
    found = subnets_referenced(synth, subnet_ids)
    assert len(found) == len(subnet_ids)
    return found


def collector_networks(synth: Synthesized) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    subnets = network_subnets(synth)
    return [ipaddress.ip_network(subnets[name]["CidrBlock"]) for name in sorted(scraper_subnets(synth))]


def node_networks(synth: Synthesized) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets of the system node group: where the router pods take their addresses."""
    (system,) = list(synth.cluster.find_resources("AWS::EKS::Nodegroup").values())
    subnets = network_subnets(synth)
    return [ipaddress.ip_network(subnets[name]["CidrBlock"]) for name in subnets_referenced(synth, system)]


def test_the_scraper_sits_in_subnets_of_its_own_in_two_zones_inside_the_vpc(default: Synthesized) -> None:
    collector = scraper_subnets(default)
    subnets = network_subnets(default)
    assert len(collector) >= 2
    zones = {json.dumps(subnets[name]["AvailabilityZone"], sort_keys=True) for name in collector}
    assert len(zones) == len(collector)  # one per zone: the collector wants two zones at least
    (vpc,) = default.network.find_resources("AWS::EC2::VPC").values()
    vpc_network = ipaddress.ip_network(vpc["Properties"]["CidrBlock"])
    for name in collector:
        network = ipaddress.ip_network(subnets[name]["CidrBlock"])
        assert network.subnet_of(vpc_network), name  # type: ignore[arg-type]  # both IPv4: the stub wants one version
        for other, properties in subnets.items():
            if other != name:
                assert not network.overlaps(ipaddress.ip_network(properties["CidrBlock"])), (name, other)
    # They route nowhere beyond the VPC: the collector's ENIs only reach into the cluster.
    associations = default.network.find_resources("AWS::EC2::SubnetRouteTableAssociation").values()
    tables = {
        a["Properties"]["RouteTableId"]["Ref"]
        for a in associations
        if a["Properties"]["SubnetId"].get("Ref") in collector
    }
    assert len(tables) == len(collector)
    for route in default.network.find_resources("AWS::EC2::Route").values():
        assert route["Properties"]["RouteTableId"]["Ref"] not in tables, route
    # and they are what the network stack exposes to the other stacks
    exposed = {default.stacks.network.resolve(s.subnet_id)["Ref"] for s in default.stacks.network.collector_subnets}
    assert exposed == collector


@pytest.mark.parametrize("fixture", sorted(SHIPPED))
def test_no_node_group_instance_group_or_endpoint_is_placed_in_the_collector_subnets(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    collector = scraper_subnets(synth)
    placed: dict[str, list[Template | None]] = {  # resource types that put ENIs (and so, for nodes, pods) into subnets
        "AWS::EKS::Nodegroup": [synth.cluster, synth.gpu_nodes],
        "AWS::SageMaker::Cluster": [synth.hyperpod],
        "AWS::EKS::Cluster": [synth.cluster],
        "AWS::Lambda::Function": [synth.cluster],
        "AWS::EC2::VPCEndpoint": [synth.network],
    }
    nodes = 0
    for kind, templates in placed.items():
        for template in filter(None, templates):
            for name, resource in template.find_resources(kind).items():
                used = subnets_referenced(synth, resource["Properties"])
                assert not used & collector, (kind, name)
                if kind in ("AWS::EKS::Nodegroup", "AWS::SageMaker::Cluster"):
                    assert used, (kind, name)  # a node pool names its subnets: the check above saw them
                    nodes += 1
    # the system nodes (none of pdstack's on an existing cluster) and the GPU nodes, node groups or HyperPod
    assert nodes >= (1 if synth.deployment.cluster.existing else 2)
    for template in filter(None, (synth.cluster, synth.gpu_nodes, synth.hyperpod)):
        for resource in template.find_resources("AWS::EC2::LaunchTemplate").values():
            assert "SubnetId" not in json.dumps(resource["Properties"])  # the node group's subnets place them


def _policies_and_pods(objects: list[dict[str, Any]], synth: Synthesized):
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return policies, pod_templates([*objects, smoke_job(synth.deployment)])


def _engine_blocks(policies: list[dict[str, Any]]) -> set[str]:
    """The networks admitted to the engines' listening ports (not the reply ports of the return-traffic policies)."""
    return {
        peer["ipBlock"]["cidr"]
        for policy in policies
        if policy["metadata"]["name"] != "pdstack-router-ingress"
        and not policy["metadata"]["name"].endswith("-return-traffic")
        for rule in policy["spec"]["ingress"]
        for peer in rule.get("from", [])
        if "ipBlock" in peer
    }


def test_the_applied_policies_admit_the_collector_on_the_scraped_ports_and_no_pod(default: Synthesized) -> None:
    deployment = default.deployment
    router_metrics = deployment.serving.router.metrics_port
    assert router_metrics is not None
    policies, pods = _policies_and_pods(default.stacks.workloads.objects, default)
    collectors = collector_networks(default)
    pod_addresses = [Source(ip=str(network[9])) for network in node_networks(default)]
    assert pod_addresses
    for network in collectors:
        for collector in (Source(ip=str(network[4])), Source(ip=str(network[-2]))):  # AWS keeps the first 4, last 1
            assert admitted(policies, collector, pods["pdstack-router"], router_metrics)
            for role in ENGINES:
                ranges = deployment.serving.role(role).port_ranges()
                assert admitted(policies, collector, pods[f"pdstack-{role}"], ranges["http"].start), (role, network)
                for port in [*ranges["kv_events"], *ranges["nixl_side_channel"]]:
                    assert not admitted(policies, collector, pods[f"pdstack-{role}"], port), (role, port)
    for role in ENGINES:  # the engines' API stays closed to every pod address, /metrics included
        for pod in pod_addresses:
            assert not admitted(policies, pod, pods[f"pdstack-{role}"], deployment.serving.role(role).ports.http)
    # nothing wider by default: the engines admit by address the collector's subnets and nothing else
    assert _engine_blocks(policies) == {str(network) for network in collectors}


def test_named_client_networks_leave_the_router_to_them_and_the_collector(default: Synthesized) -> None:
    deployment = with_router(allowed_client_cidrs=["172.20.0.0/16"])
    objects = serving_objects(deployment, IMAGE, default.stacks.network.collector_cidrs)
    policies, pods = _policies_and_pods(objects, default)
    router, port = pods["pdstack-router"], deployment.serving.router.port
    metrics_port = deployment.serving.router.metrics_port
    assert metrics_port is not None  # its own port, so that "not admitted there" means something
    assert admitted(policies, Source(ip="172.20.9.9"), router, port)
    for network in collector_networks(default):  # the collector: the metrics port, not the API
        assert admitted(policies, Source(ip=str(network[4])), router, metrics_port)
        assert not admitted(policies, Source(ip=str(network[4])), router, port)
    for network in node_networks(default):  # a pod elsewhere in the VPC: no longer admitted for /metrics' sake
        assert not admitted(policies, Source(ip=str(network[9])), router, port)
        assert not admitted(policies, Source(ip=str(network[9])), router, metrics_port)


def test_switched_off_there_are_no_collector_subnets_and_nothing_is_admitted_for_them(all_types: Synthesized) -> None:
    assert all_types.observability is None
    assert all_types.stacks.network.collector_cidrs == []
    kinds = {
        json.dumps(sorted((t["Key"], t["Value"]) for t in p["Tags"] if t["Key"].startswith("aws-cdk:subnet")))
        for p in network_subnets(all_types).values()
    }
    assert len(kinds) == 2 and all("Isolated" not in kind for kind in kinds)  # public and private only
    policies, pods = _policies_and_pods(all_types.stacks.workloads.objects, all_types)
    assert _engine_blocks(policies) == set()
    (router,) = [p for p in policies if p["metadata"]["name"] == "pdstack-router-ingress"]
    blocks = [
        peer["ipBlock"]["cidr"] for rule in router["spec"]["ingress"] for peer in rule["from"] if "ipBlock" in peer
    ]
    assert blocks == [all_types.deployment.network.cidr]  # the clients' default, not a scraper's
    named = with_router(allowed_client_cidrs=["172.20.0.0/16"])
    policies, pods = _policies_and_pods(
        serving_objects(named, IMAGE, all_types.stacks.network.collector_cidrs), all_types
    )
    for network in node_networks(all_types):  # no VPC address rides in as a scraper's
        assert not admitted(policies, Source(ip=str(network[9])), pods["pdstack-router"], named.serving.router.port)


def test_six_zones_give_the_scraper_the_five_subnets_it_takes_and_the_policies_those_five(
    synthesized: SynthesisCache,
) -> None:
    """SubnetIds takes at most 5 (AMP API reference, EksConfiguration); a sixth zone's collector subnet stays empty
    and unadmitted."""
    data = copy.deepcopy(load_yaml("default.yaml"))
    data.update(account="123456789012", region="us-east-1")
    data["network"].update(az_count=6, availability_zones=[f"us-east-1{z}" for z in "abcdef"])
    stacks = synthesized.get(parse_deployment(data)).stacks
    assert stacks.observability is not None
    eks = stacks.observability.resolve(stacks.observability.scraper.source)["eksConfiguration"]
    assert len(eks["subnetIds"]) == 5
    cidrs = stacks.network.collector_cidrs
    assert len(cidrs) == 5 and _engine_blocks(
        [o for o in stacks.workloads.objects if o["kind"] == "NetworkPolicy"]
    ) == set(cidrs)
