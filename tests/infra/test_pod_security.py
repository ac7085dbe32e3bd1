"""Every pod pdstack renders is locked down: no privilege escalation, RuntimeDefault seccomp, all capabilities dropped
but what EFA needs, a non-root user, a read-only root with every path it writes mounted, and an API token only where
the pod calls the API server. Checked against what the other side does: the base image's user and cache paths
(pinned below), the router's discovery (which reads the token the kubelet mounts), the kubelet's hostPath."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from infra.config import Deployment, parse_deployment
from infra.workloads.stack import serving_objects
from runtime.router.config import KubernetesDiscovery
from tests.support.synthesis import load_yaml, wide_ep_decode

IMAGE = "123456789012.dkr.ecr.us-east-2.amazonaws.com/pdstack/serving:0123456789abcdef0123"
REPO = Path(__file__).resolve().parents[2]
# The engine's user: a non-root uid that owns the model cache (infra/workloads/worker_objects.py ENGINE_UID). The
# serving
# image (container/Dockerfile) points the caches vLLM and its libraries write at run time under /tmp with ENV.
BASE_IMAGE_UID = 2000
_ENV = re.search(r"^ENV (.+)$", (REPO / "container" / "Dockerfile").read_text(), re.MULTILINE)
BASE_IMAGE_CACHE_ENV = dict(pair.split("=", 1) for pair in _ENV.group(1).split()) if _ENV else {}
# Where the kubelet mounts the service-account token when automountServiceAccountToken is on (Kubernetes docs,
# "Configure Service Accounts for Pods"): the router's discovery reads it from there.
KUBELET_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def deployments() -> dict[str, Deployment]:
    return {
        "default": parse_deployment(load_yaml("default.yaml")),
        "hyperpod": parse_deployment(load_yaml("hyperpod.yaml")),
        "wide-ep": wide_ep_decode(),
    }


def pod_specs(deployment: Deployment) -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {}
    for obj in serving_objects(deployment, IMAGE):
        spec = obj.get("spec", {})
        if "template" in spec:
            specs[obj["metadata"]["name"]] = spec["template"]["spec"]
        elif "leaderWorkerTemplate" in spec:
            for part in ("leaderTemplate", "workerTemplate"):
                specs[f"{obj['metadata']['name']}/{part}"] = spec["leaderWorkerTemplate"][part]["spec"]
    return specs


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def effective(spec: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    return container.get("securityContext", {}).get(key, spec.get("securityContext", {}).get(key))


CASES = [(name, pod) for name, deployment in deployments().items() for pod in pod_specs(deployment)]


@pytest.mark.parametrize(("deployment_name", "pod"), CASES)
def test_every_container_is_locked_down(deployment_name: str, pod: str) -> None:
    spec = pod_specs(deployments()[deployment_name])[pod]
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers(spec):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "privileged" not in context


@pytest.mark.parametrize(("deployment_name", "pod"), CASES)
def test_serving_containers_run_as_a_non_root_user(deployment_name: str, pod: str) -> None:
    spec = pod_specs(deployments()[deployment_name])[pod]
    for container in spec["containers"]:
        assert effective(spec, container, "runAsNonRoot") is True
        assert effective(spec, container, "runAsUser") not in (None, 0)


def test_engines_keep_ipc_lock_alone_and_run_as_the_image_user() -> None:
    for name, spec in pod_specs(deployments()["wide-ep"]).items():
        (container,) = spec["containers"]
        added = container["securityContext"]["capabilities"].get("add", [])
        if name.startswith("pdstack-router"):
            assert added == []
            continue
        assert added == ["IPC_LOCK"], name  # EFA memory registration pins memory
        assert effective(spec, container, "runAsUser") == BASE_IMAGE_UID  # the owner of its HOME and caches


def _writable_mounts(spec: dict[str, Any], container: dict[str, Any]) -> list[PurePosixPath]:
    volumes = {v["name"]: v for v in spec["volumes"]}
    writable = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if not mount.get("readOnly") and ("emptyDir" in volume or "hostPath" in volume):
            writable.append(PurePosixPath(mount["mountPath"]))
    return writable


@pytest.mark.parametrize("deployment_name", ["default", "hyperpod", "wide-ep"])
def test_every_path_an_engine_writes_is_a_writable_mount(deployment_name: str) -> None:
    deployment = deployments()[deployment_name]
    for name, spec in pod_specs(deployment).items():
        if name.startswith("pdstack-router"):
            continue
        (container,) = spec["containers"]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        assert set(BASE_IMAGE_CACHE_ENV) == {
            "VLLM_CACHE_ROOT",
            "TRITON_CACHE_DIR",
            "NUMBA_CACHE_DIR",
            "OUTLINES_CACHE_DIR",
        }
        paths = {
            **BASE_IMAGE_CACHE_ENV,
            **{k: env[k] for k in ("HOME", "HF_HOME", "TRANSFORMERS_CACHE")},
            "model cache": deployment.serving.model.cache_dir,
            "shared memory": "/dev/shm",
        }
        writable = _writable_mounts(spec, container)
        for what, path in paths.items():
            assert any(PurePosixPath(path).is_relative_to(m) for m in writable), (name, what, path)


def test_the_model_cache_is_handed_to_the_engine_user_before_it_starts() -> None:
    deployment = deployments()["default"]
    spec = pod_specs(deployment)["pdstack-decode"]
    (owner,) = spec["initContainers"]
    cache_dir = deployment.serving.model.cache_dir
    # The kubelet creates a missing hostPath DirectoryOrCreate as root, mode 0755: the engine user could not write.
    (volume,) = [v for v in spec["volumes"] if v["name"] == "model-cache"]
    assert volume["hostPath"]["type"] == "DirectoryOrCreate"
    assert owner["command"] == [
        "chown",
        (f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}"),
        cache_dir,
    ]
    assert {"name": "model-cache", "mountPath": cache_dir} in owner["volumeMounts"]
    assert owner["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}


def test_engines_get_no_api_token_and_the_router_gets_one_to_watch_endpoint_slices() -> None:
    specs = pod_specs(deployments()["default"])
    for role in ("pdstack-prefill", "pdstack-decode"):
        assert specs[role]["automountServiceAccountToken"] is False
    router = specs["pdstack-router"]
    assert router["automountServiceAccountToken"] is True
    # ... and the discovery reads the token where the kubelet puts it
    assert KubernetesDiscovery().service_account_dir == KUBELET_TOKEN_DIR


def test_a_router_with_static_engines_gets_no_api_token() -> None:
    data = load_yaml("default.yaml")
    data["serving"].setdefault("router", {})["discovery"] = {
        "static": [
            {"url": "http://10.0.1.5:8000", "role": "prefill"},
            {"url": "http://10.0.1.6:8000", "role": "decode"},
        ]
    }
    router = pod_specs(parse_deployment(data))["pdstack-router"]
    assert router["automountServiceAccountToken"] is False


def test_the_router_writes_its_tokenizer_cache_to_a_writable_mount() -> None:
    from runtime.router.server import TOKENIZER_CACHE

    spec = pod_specs(deployments()["default"])["pdstack-router"]
    (container,) = spec["containers"]
    # In the pod no TMPDIR is set, so Python's tempfile.gettempdir() (which the path is built on) is /tmp there.
    assert "TMPDIR" not in {e["name"] for e in container["env"]}
    in_the_pod = PurePosixPath("/tmp", PurePosixPath(TOKENIZER_CACHE).name)
    assert any(in_the_pod.is_relative_to(m) for m in _writable_mounts(spec, container)), in_the_pod
