"""The serving workloads: every object valid against the Kubernetes 1.35 schemas, and the details that make P/D work
on EFA (resources, shm, IPC_LOCK, pod IP, ports, probes, same-zone affinity, node selection per provider, RBAC)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from infra.config import parse_deployment
from infra.workload_names import ROUTER
from runtime.config import Serving
from runtime.router.config import KubernetesDiscovery
from tests.infra.secretproviderclass_schema import SECRET_PROVIDER_CLASS_V1
from tests.support.synthesis import Synthesized, load_yaml, wide_ep_decode
from tests.support.workload_objects import IMAGE, container, find, objects_of, pod_spec

K8S = "1.35"
DEPLOYMENTS = {
    "default": lambda: parse_deployment(load_yaml("default.yaml")),
    "hyperpod": lambda: parse_deployment(load_yaml("hyperpod.yaml")),
    "capacity-block": lambda: parse_deployment(load_yaml("capacity-block.yaml")),
    "wide-ep": wide_ep_decode,
}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_every_object_is_valid_kubernetes(name: str) -> None:
    for obj in objects_of(DEPLOYMENTS[name]()):
        if obj["kind"] == "LeaderWorkerSet":
            for template in ("leaderTemplate", "workerTemplate"):
                pod_template = {
                    "apiVersion": "v1",
                    "kind": "PodTemplate",
                    "metadata": {"name": "t", "namespace": "n"},
                    "template": obj["spec"]["leaderWorkerTemplate"][template],
                }
                kubernetes_validate.validate(pod_template, K8S, strict=True)
            continue
        if obj["kind"] == "SecretProviderClass":
            jsonschema.Draft7Validator(SECRET_PROVIDER_CLASS_V1).validate(obj)
            continue
        kubernetes_validate.validate(obj, K8S, strict=True)


def test_a_bad_object_is_caught_by_the_schema_check() -> None:
    obj = find(objects_of(DEPLOYMENTS["default"]()), "Deployment", "pdstack-decode")
    obj["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S, strict=True)


def test_leader_worker_set_for_multi_node_replicas() -> None:
    objects = objects_of(wide_ep_decode())
    lws = find(objects, "LeaderWorkerSet", "pdstack-decode")
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    template = lws["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2 and template["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert template["leaderTemplate"] == template["workerTemplate"]
    assert lws["spec"]["startupPolicy"] == "LeaderCreated"
    assert find(objects, "Deployment", "pdstack-prefill")  # the single-node role stays a Deployment
    assert not [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "pdstack-decode"]


def test_deepep_v2_roles_mount_the_hosts_gdrdrv_and_no_other_role_does() -> None:
    data = load_yaml("wide-ep.yaml")
    data["serving"]["decode"]["all2all_backend"] = "deepep_v2"
    objects = objects_of(parse_deployment(data))
    lws = find(objects, "LeaderWorkerSet", "pdstack-decode")
    spec = pod_spec(lws)
    assert {"name": "gdrdrv", "hostPath": {"path": "/dev/gdrdrv", "type": "CharDevice"}} in spec["volumes"]
    assert {"name": "gdrdrv", "mountPath": "/dev/gdrdrv"} in container(lws)["volumeMounts"]
    prefill = find(objects, "Deployment", "pdstack-prefill")
    assert all(v["name"] != "gdrdrv" for v in pod_spec(prefill)["volumes"])
    shipped = pod_spec(find(objects_of(wide_ep_decode()), "LeaderWorkerSet", "pdstack-decode"))
    assert all(v["name"] != "gdrdrv" for v in shipped["volumes"])  # allgather_reducescatter needs no gdrcopy


def test_worker_resources_from_the_catalog() -> None:
    objects = objects_of(wide_ep_decode())
    decode = container(find(objects, "LeaderWorkerSet", "pdstack-decode"))["resources"]
    assert decode["limits"]["nvidia.com/gpu"] == "8" and decode["limits"]["vpc.amazonaws.com/efa"] == "32"
    assert decode["limits"]["hugepages-2Mi"] == "5120Mi" and decode["limits"]["memory"].endswith("Mi")
    assert "cpu" not in decode["limits"] and decode["requests"]["cpu"]
    prefill = container(find(objects_of(DEPLOYMENTS["default"]()), "Deployment", "pdstack-prefill"))["resources"]
    assert prefill["limits"]["nvidia.com/gpu"] == "1" and prefill["limits"]["vpc.amazonaws.com/efa"] == "4"
    for key in ("nvidia.com/gpu", "vpc.amazonaws.com/efa", "hugepages-2Mi"):
        assert prefill["requests"][key] == prefill["limits"][key]


def test_p5en_pod_with_all_gpus_gets_all_16_efa_interfaces() -> None:
    objects = objects_of(DEPLOYMENTS["capacity-block"]())
    decode = container(find(objects, "Deployment", "pdstack-decode"))["resources"]["limits"]
    assert decode["nvidia.com/gpu"] == "8" and decode["vpc.amazonaws.com/efa"] == "16"


def test_worker_pod_has_shm_ipc_lock_pod_ip_and_named_ports() -> None:
    deployment = DEPLOYMENTS["default"]()
    obj = find(objects_of(deployment), "Deployment", "pdstack-prefill")
    spec, c = pod_spec(obj), container(obj)
    (shm,) = [v for v in spec["volumes"] if v["name"] == "shm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "20Gi"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert c["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["PDSTACK_CONFIG"]["value"] == "/etc/pdstack/serving.yaml"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {
        "http": deployment.serving.prefill.ports.http,
        "nixl": deployment.serving.prefill.ports.nixl_side_channel,
        "kv-events": deployment.serving.prefill.ports.kv_events,
    }
    assert c["args"] == ["prefill"] and c["image"] == IMAGE


def test_probes_give_the_model_time_to_load() -> None:
    deployment = DEPLOYMENTS["default"]()
    c = container(find(objects_of(deployment), "Deployment", "pdstack-decode"))
    startup = c["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= deployment.workloads.startup_minutes * 60
    assert c["readinessProbe"]["httpGet"]["path"] == "/health" and c["livenessProbe"]["httpGet"]["path"] == "/health"


def test_prefill_and_decode_required_in_one_zone() -> None:
    objects = objects_of(DEPLOYMENTS["default"]())
    terms = []
    for role in ("prefill", "decode"):
        obj = find(objects, "Deployment", f"pdstack-{role}")
        (term,) = pod_spec(obj)["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "topology.kubernetes.io/zone"
        # The selector matches the pod's own labels, so the first pod can schedule, and it matches the other role.
        own = obj["spec"]["template"]["metadata"]["labels"]
        assert term["labelSelector"]["matchLabels"].items() <= own.items()
        terms.append(term)
    assert terms[0] == terms[1]


@pytest.mark.parametrize(("name", "instance_type"), [("default", "p5.48xlarge"), ("hyperpod", "ml.p5.48xlarge")])
def test_node_selection_is_the_only_provider_difference(name: str, instance_type: str) -> None:
    spec = pod_spec(find(objects_of(DEPLOYMENTS[name]()), "Deployment", "pdstack-decode"))
    assert spec["nodeSelector"]["node.kubernetes.io/instance-type"] == instance_type
    keys = {t["key"] for t in spec["tolerations"]}
    assert "nvidia.com/gpu" in keys and "sagemaker.amazonaws.com/node-health-status" not in keys
    if name == "hyperpod":  # only nodes that passed HyperPod's health checks
        assert spec["nodeSelector"]["sagemaker.amazonaws.com/node-health-status"] == "Schedulable"


def test_same_pod_apart_from_node_selection_and_cache_path_on_both_providers() -> None:
    def normalized(name: str) -> dict[str, Any]:
        spec = json.loads(json.dumps(pod_spec(find(objects_of(DEPLOYMENTS[name]()), "Deployment", "pdstack-decode"))))
        spec.pop("nodeSelector")
        spec.pop("tolerations")  # those of the pools' configured taints (tests/infra/test_schedulability.py)
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "model-cache"]
        spec["affinity"] = None
        for c in spec["containers"]:  # sized from each provider's nodes (threads per core, node agents)
            c["resources"] = None
        return spec

    assert normalized("default") == normalized("hyperpod")


def test_labels_for_llm_d_and_kubernetes() -> None:
    for role in ("prefill", "decode"):
        labels = find(objects_of(DEPLOYMENTS["default"]()), "Deployment", f"pdstack-{role}")["spec"]["template"][
            "metadata"
        ]["labels"]
        assert labels["llm-d.ai/role"] == role and labels["llm-d.ai/inference-serving"] == "true"
        for key in ("name", "instance", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{key}" in labels


def test_worker_services_are_what_the_router_discovers() -> None:
    objects = objects_of(DEPLOYMENTS["default"]())
    discovery = KubernetesDiscovery()
    role_label = discovery.role_label
    for role in ("prefill", "decode"):
        service = find(objects, "Service", f"pdstack-{role}-engines")
        assert service["spec"]["clusterIP"] == "None"
        assert service["metadata"]["labels"][role_label] == role  # EndpointSlices inherit the Service's labels
        assert discovery.port_name in {p["name"] for p in service["spec"]["ports"]}


def test_disruption_budgets() -> None:
    objects = objects_of(DEPLOYMENTS["default"]())
    for name in ("pdstack-prefill", "pdstack-decode"):
        assert find(objects, "PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1
    assert find(objects, "PodDisruptionBudget", ROUTER)["spec"]["maxUnavailable"] == 1


def test_router_deployment_service_and_probes() -> None:
    deployment = DEPLOYMENTS["default"]()
    objects = objects_of(deployment)
    router = find(objects, "Deployment", ROUTER)
    assert router["spec"]["replicas"] >= 2
    c = container(router)
    assert c["args"] == ["router"] and c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert pod_spec(router)["nodeSelector"] == {"pdstack.io/pool": "system"}
    service = find(objects, "Service", ROUTER)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == deployment.serving.router.port
    assert not [o for o in objects if o["metadata"]["name"] == f"{ROUTER}-nlb"]


def test_optional_internal_load_balancer_is_the_controllers_tls_nlb() -> None:
    """An internal NLB of the AWS Load Balancer Controller (not the in-tree annotations): IP targets on the router's
    API port, TLS on 443 with the configured certificate, open to the router's clients only."""
    data = load_yaml("default.yaml")
    arn = "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-0000-4000-8000-00000000abcd"
    data["workloads"]["router"].update(
        internal_load_balancer=True, certificate_arn=arn, allowed_client_cidrs=["10.0.0.0/16", "192.168.4.0/24"]
    )
    deployment = parse_deployment(data)
    nlb = find(objects_of(deployment), "Service", f"{ROUTER}-nlb")
    annotations = nlb["metadata"]["annotations"]
    assert not [
        a
        for a in annotations
        if a
        in (
            "service.beta.kubernetes.io/aws-load-balancer-type",
            "service.beta.kubernetes.io/aws-load-balancer-internal",
        )
    ]
    assert nlb["spec"]["type"] == "LoadBalancer"
    assert nlb["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"] == arn
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"] == "443"
    assert nlb["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "http", "protocol": "TCP"}]
    router = find(objects_of(deployment), "Deployment", ROUTER)
    assert {"name": "http", "containerPort": deployment.serving.router.port, "protocol": "TCP"} in container(router)[
        "ports"
    ]
    assert nlb["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
    assert nlb["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/16", "192.168.4.0/24"]
    # the router's NetworkPolicy filters on the clients' addresses: the NLB must keep them
    assert (
        "preserve_client_ip.enabled=true"
        in annotations["service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"]
    )


def test_router_may_only_read_endpoint_slices() -> None:
    objects = objects_of(DEPLOYMENTS["default"]())
    role = find(objects, "Role", ROUTER)
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    binding = find(objects, "RoleBinding", ROUTER)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": ROUTER, "namespace": "pdstack"}]


def test_configmap_is_what_the_runtime_reads() -> None:
    deployment = DEPLOYMENTS["default"]()
    config = find(objects_of(deployment), "ConfigMap", "pdstack-serving")
    serving = Serving.model_validate(yaml.safe_load(config["data"]["serving.yaml"]))
    assert serving.model == deployment.serving.model and serving.decode == deployment.serving.decode
    assert serving.router.discovery.kubernetes is not None
    assert serving.router.discovery.kubernetes.namespace == deployment.workloads.namespace


def _model_reader_id(synth: Synthesized) -> str:
    reader = synth.stacks.workloads.model_reader
    assert reader is not None
    return synth.stacks.workloads.resolve(reader.node.default_child.logical_id)


def test_worker_pod_identity_reads_only_the_model_prefix(default: Synthesized) -> None:
    reader = _model_reader_id(default)
    associations = default.workloads.find_resources("AWS::EKS::PodIdentityAssociation")
    accounts = {
        a["Properties"]["ServiceAccount"]
        for a in associations.values()
        if a["Properties"]["RoleArn"] == {"Fn::GetAtt": [reader, "Arn"]}
    }
    assert accounts == {"pdstack-prefill", "pdstack-decode", ROUTER}
    (policy,) = [
        p
        for p in default.workloads.find_resources("AWS::IAM::Policy").values()
        if {"Ref": reader} in p["Properties"]["Roles"]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert {s["Action"] for s in statements} == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}  # SSE-KMS buckets
    text = json.dumps(statements)
    assert "my-models/meta-llama/Llama-3.1-8B-Instruct/*" in text and '"s3:prefix"' in text


def test_pod_identity_exists_before_the_first_pod(default: Synthesized) -> None:
    """EKS injects Pod Identity credentials at pod creation: a pod created before its association has none."""
    resources = default.workloads.to_json()["Resources"]
    reader = {"Fn::GetAtt": [_model_reader_id(default), "Arn"]}
    associations = {
        k
        for k, a in default.workloads.find_resources("AWS::EKS::PodIdentityAssociation").items()
        if a["Properties"]["RoleArn"] == reader
    }
    manifest = resources[
        default.stacks.workloads.resolve(default.stacks.workloads.manifest.node.default_child.logical_id)
    ]
    assert manifest["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"
    assert associations and associations <= set(manifest.get("DependsOn", []))


def test_workloads_wait_for_the_leader_worker_set_chart(default: Synthesized) -> None:
    assert default.stacks.cluster in default.stacks.workloads.dependencies
    manifest = default.stacks.workloads.manifest
    assert default.stacks.cluster.addons.leader_worker_set in manifest.node.dependencies


def test_capacity_check_names_the_roles() -> None:
    data = load_yaml("default.yaml")
    data["serving"]["decode"]["replicas"] = 2
    data["serving"]["decode"]["tensor_parallel"] = 8
    data["serving"]["prefill"]["tensor_parallel"] = 8
    from infra.config import DeploymentError

    with pytest.raises(DeploymentError, match=r"need 3 p5.48xlarge nodes .* at most 2"):
        parse_deployment(data)


def test_leader_worker_set_matches_the_pinned_lws_schema() -> None:
    import jsonschema

    from tests.infra.leaderworkerset_schema import LEADER_WORKER_SET_V1

    lws = find(objects_of(wide_ep_decode()), "LeaderWorkerSet", "pdstack-decode")
    jsonschema.Draft7Validator(LEADER_WORKER_SET_V1).validate(lws)
    broken = json.loads(json.dumps(lws))
    broken["spec"]["leaderWorkerTemplate"]["size"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(LEADER_WORKER_SET_V1).validate(broken)
    broken = json.loads(json.dumps(lws))
    broken["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "Always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(LEADER_WORKER_SET_V1).validate(broken)


def test_a_rollout_drains_inside_the_grace_periods() -> None:
    """Rolling a worker or the router fails no request: each pod keeps serving through its preStop (endpoints drop
    it), then drains (vLLM's --shutdown-timeout, the router's shutdown_grace_s), all inside its grace period."""
    from runtime.worker import DecodeWorker, PrefillWorker
    from tests.support.runtime_inputs import p5_host

    deployment = DEPLOYMENTS["default"]()
    objects = objects_of(deployment)
    host = p5_host()
    for name, worker in (("pdstack-prefill", PrefillWorker), ("pdstack-decode", DecodeWorker)):
        pod = pod_spec(find(objects, "Deployment", name))
        argv = worker(deployment.serving, host, "/m", {}).launch().argv
        drain = int(argv[argv.index("--shutdown-timeout") + 1])
        prestop = container(find(objects, "Deployment", name))["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert prestop > 0 and drain > 0 and prestop + drain < pod["terminationGracePeriodSeconds"]
    router = find(objects, "Deployment", ROUTER)
    prestop = container(router)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert prestop + deployment.serving.router.shutdown_grace_s < pod_spec(router)["terminationGracePeriodSeconds"]


def test_a_router_drain_longer_than_its_grace_period_is_rejected() -> None:
    from infra.config import DeploymentError

    data = load_yaml("default.yaml")
    data["serving"].setdefault("router", {})["shutdown_grace_s"] = 60.0
    with pytest.raises(DeploymentError) as info:
        parse_deployment(data)
    message = str(info.value)
    assert "serving.router.shutdown_grace_s=60.0" in message and "workloads.router.termination_grace_s=60" in message
    assert "workloads.router.prestop_s=5" in message


def test_the_cluster_router_default_is_precise_prefix_mode() -> None:
    """Several router replicas each learning from their own decisions would each see a different cache; the engines
    publish KV events in the cluster and the router fetches the model's tokenizer, so the rendered default is
    precise (every replica indexes the same events)."""
    deployment = DEPLOYMENTS["default"]()
    config = find(objects_of(deployment), "ConfigMap", "pdstack-serving")
    rendered = yaml.safe_load(config["data"]["serving.yaml"])
    serving = Serving.model_validate(rendered)
    assert deployment.workloads.router.replicas >= 2
    assert serving.router.prefix_mode == "precise" and serving.kv_events.enabled
    assert serving.model.source_kind in ("s3", "local")  # the router loads or fetches the tokenizer from there


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_no_rendered_service_takes_the_name_lws_creates_its_headless_service_under(name: str) -> None:
    """LWS keeps an existing Service of its own name and then never publishes the not-ready leader's DNS record
    that LWS_LEADER_ADDRESS names: the workers cannot join, the leader never turns Ready, the group loops."""
    from tests.infra.chart_facts import lws_owned_service_names

    objects = objects_of(DEPLOYMENTS[name]())
    taken = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert not taken & lws_owned_service_names(objects)


def test_the_discovery_service_still_selects_every_engine_pod_of_a_leader_worker_set() -> None:
    from runtime.router.contract import ROLE_LABEL

    objects = objects_of(wide_ep_decode())
    lws = find(objects, "LeaderWorkerSet", "pdstack-decode")
    services = [o for o in objects if o["kind"] == "Service" and o["metadata"]["labels"].get(ROLE_LABEL) == "decode"]
    (service,) = services
    for template in ("leaderTemplate", "workerTemplate"):
        labels = lws["spec"]["leaderWorkerTemplate"][template]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
