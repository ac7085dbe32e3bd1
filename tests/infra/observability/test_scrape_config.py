"""The collector's scrape configuration against the pods pdstack really renders: Kubernetes service discovery's meta
labels are derived from the rendered pod templates (labels, named container ports), the relabelling is applied with
Prometheus's semantics (anchored regexes, ';'-joined sources), and exactly the router and both engine roles are
kept, on their http port, with the target labels the dashboards group by. promtool validates the whole file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import parse_deployment
from infra.observability.targets import ENGINE_JOB, ROUTER_JOB, scrape_config, sd_pod_label
from infra.workloads.stack import serving_objects
from tests.support.serving_units import two_model_deployment
from tests.support.synthesis import load_yaml

DEPLOYMENT = parse_deployment(load_yaml("default.yaml"))


def pod_templates(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    templates = []
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] == "Deployment":
            templates.append(spec["template"])
        elif obj["kind"] == "LeaderWorkerSet":
            lws = spec["leaderWorkerTemplate"]
            templates += [t for t in (lws.get("leaderTemplate"), lws["workerTemplate"]) if t]
    return templates


def discovered(template: dict[str, Any], namespace: str, name: str, phase: str = "Running") -> list[dict[str, str]]:
    """What Kubernetes SD (role: pod) yields for one pod: a target per declared container port."""
    base = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_phase": phase,
        **{sd_pod_label(k): v for k, v in template["metadata"]["labels"].items()},
    }
    return [
        {
            **base,
            "__address__": f"10.0.0.9:{port['containerPort']}",
            "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
        }
        for container in template["spec"]["containers"]
        for port in container.get("ports", [])
    ]


def relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule["action"] == "keep":
            if not match:
                return None
        elif rule["action"] == "replace":
            if match:
                labels[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$1", r"\1"))
        else:
            raise AssertionError(f"relabel action {rule['action']} not simulated")
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def scraped(config: dict[str, Any], targets: list[dict[str, str]]) -> list[tuple[str, dict[str, str]]]:
    kept = []
    for job in config["scrape_configs"]:
        kept += [(job["job_name"], result) for t in targets if (result := relabel(t, job["relabel_configs"]))]
    return kept


def test_router_and_both_roles_are_scraped_with_the_dashboard_labels() -> None:
    config = scrape_config(DEPLOYMENT)
    namespace = DEPLOYMENT.workloads.namespace
    targets = [
        t
        for i, template in enumerate(pod_templates(serving_objects(DEPLOYMENT, "image")))
        for t in discovered(template, namespace, f"pod-{i}")
    ]
    kept = scraped(config, targets)
    jobs = sorted((job, labels.get("pd_role")) for job, labels in kept)
    assert jobs == [(ENGINE_JOB, "decode"), (ENGINE_JOB, "prefill"), (ROUTER_JOB, None)]
    for _, labels in kept:
        assert labels["namespace"] == namespace and labels["model"] == DEPLOYMENT.serving.model.served_name
        assert labels["pod"].startswith("pod-")
    assert len(targets) > len(kept), "the NIXL and KV-event ports must not be scraped"


def test_other_pods_are_not_scraped() -> None:
    config = scrape_config(DEPLOYMENT)
    (prefill,) = [
        t
        for t in pod_templates(serving_objects(DEPLOYMENT, "image"))
        if t["metadata"]["labels"].get("llm-d.ai/role") == "prefill"
    ]
    other = {
        **prefill,
        "metadata": {"labels": {**prefill["metadata"]["labels"], "app.kubernetes.io/instance": "another-deployment"}},
    }
    unlabelled = {**prefill, "metadata": {"labels": {"app.kubernetes.io/instance": DEPLOYMENT.name}}}
    targets = [
        *discovered(other, "pdstack", "x"),
        *discovered(unlabelled, "pdstack", "y"),
        *discovered(prefill, "pdstack", "z", phase="Pending"),
    ]
    assert scraped(config, targets) == []


def test_managed_collector_limits_are_respected() -> None:
    """The collector rejects intervals under 30 s and any service discovery other than Kubernetes'."""
    config = scrape_config(DEPLOYMENT)
    assert int(config["global"]["scrape_interval"].removesuffix("s")) >= 30
    for job in config["scrape_configs"]:
        assert set(job) <= {"job_name", "metrics_path", "kubernetes_sd_configs", "relabel_configs"}
        assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["pdstack"]}}]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: run `make prometheus`")
def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    """Debian's prometheus 2.42.0+ds is built without Kubernetes service discovery ("field kubernetes_sd_configs not
    found"): promtool checks everything else, with the discovery swapped for an empty static list."""
    config = scrape_config(DEPLOYMENT)
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": []}]
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_model_is_scraped_in_its_namespace_with_its_model_and_the_shared_jobs() -> None:
    """Several models: each unit's router and engines are kept by that unit's jobs only (Kubernetes SD of its
    namespace), relabelled to the shared job names the dashboards and alerts select, with the unit's namespace and
    model."""
    deployment = two_model_deployment()
    config = scrape_config(deployment)
    assert len({job["job_name"] for job in config["scrape_configs"]}) == len(config["scrape_configs"]) == 4
    for unit in deployment.units:
        view = deployment.for_unit(unit)
        targets = [
            t
            for i, template in enumerate(pod_templates(serving_objects(view, "image")))
            for t in discovered(template, unit.namespace, f"pod-{i}")
        ]
        kept = []
        for job in config["scrape_configs"]:
            (sd,) = job["kubernetes_sd_configs"]
            if unit.namespace in sd["namespaces"]["names"]:
                kept += [result for t in targets if (result := relabel(t, job["relabel_configs"]))]
        assert sorted((labels["job"], labels.get("pd_role")) for labels in kept) == [
            (ENGINE_JOB, "decode"),
            (ENGINE_JOB, "prefill"),
            (ROUTER_JOB, None),
        ]
        for labels in kept:
            assert labels["namespace"] == unit.namespace and labels["model"] == unit.serving.model.served_name
