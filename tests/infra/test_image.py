"""The image: an immutable, scanned, encrypted ECR repository, and an in-account CodeBuild build that deploy waits
for."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import aws_cdk as cdk
import yaml
from aws_cdk.assertions import Match, Template

from infra.config import ImageConfig
from infra.image.stack import ImageProps, ImageStack
from tests.support.synthesis import Synthesized, load_yaml


def test_repository_settings(default: Synthesized) -> None:
    (repo,) = default.image.find_resources("AWS::ECR::Repository").values()
    props = repo["Properties"]
    assert props["RepositoryName"] == "pdstack/serving"  # <deployment name>/serving
    assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert props["ImageTagMutability"] == "IMMUTABLE"
    assert props["EncryptionConfiguration"]["EncryptionType"] == "KMS"
    rules = json.loads(props["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert {r["selection"]["tagStatus"] for r in rules} == {"untagged", "any"}
    # destroy-then-deploy: a retained repository of a fixed name failed the next create (AlreadyExists)
    assert repo["DeletionPolicy"] == "Delete" and props["EmptyOnDelete"] is True


def test_codebuild_project(default: Synthesized) -> None:
    (project,) = default.image.find_resources("AWS::CodeBuild::Project").values()
    props = project["Properties"]
    env = props["Environment"]
    assert env["PrivilegedMode"] is True and env["ComputeType"] == "BUILD_GENERAL1_LARGE"
    variables = {v["Name"]: v["Value"] for v in env["EnvironmentVariables"]}
    assert variables["BASE_IMAGE"] == default.deployment.image.base_image
    assert variables["IMAGE_TAG"] == default.stacks.image.image_tag
    assert props["Source"]["Type"] == "S3" and props["Source"]["BuildSpec"] == "container/buildspec.yml"
    assert "EncryptionKey" in props


def test_build_context_holds_only_container_and_runtime(default: Synthesized) -> None:
    manifest = json.loads((default.outdir / f"{default.stacks.image.stack_name}.assets.json").read_text())
    contexts = [
        f["source"]["path"]
        for f in manifest["files"].values()
        if (default.outdir / f["source"]["path"] / "container").is_dir()
    ]
    assert len(contexts) == 1
    top = {p.name for p in (default.outdir / contexts[0]).iterdir()}
    assert top == {"container", "runtime"}
    assert (default.outdir / contexts[0] / "container" / "Dockerfile").is_file()
    assert (default.outdir / contexts[0] / "container" / "buildspec.yml").is_file()


def test_image_tag_follows_the_content(default: Synthesized) -> None:
    tag = default.stacks.image.image_tag
    assert len(tag) == 20 and all(c in "0123456789abcdef" for c in tag)
    outputs = default.image.find_outputs("ImageUri")
    (uri,) = outputs.values()
    assert tag in json.dumps(uri["Value"])


def test_deploy_waits_for_the_build(default: Synthesized) -> None:
    default.image.has_resource_properties(
        "Custom::PdstackImageBuild", {"ProjectName": Match.any_value(), "ImageTag": default.stacks.image.image_tag}
    )
    default.image.has_resource_properties("AWS::Lambda::Function", {"Handler": "image_build.is_complete"})


GHCR_BASE = {"base_repository": "ghcr.io/example/vllm-efa", "base_tag": "v1", "base_digest": "sha256:" + "c" * 64}
PTC_ON = {
    "enabled": True,
    "credential_secret_arn": "arn:aws:secretsmanager:us-east-2:123456789012:secret:ecr-pullthroughcache/gh",
}


def test_pull_through_cache_only_when_enabled(default: Synthesized, tmp_path: Path) -> None:
    """For a ghcr.io base (the pinned base is on ECR Public, and the shipped files leave the cache off)."""
    default.image.resource_count_is("AWS::ECR::PullThroughCacheRule", 0)
    cached = _image_stack(tmp_path, {**GHCR_BASE, "pull_through_cache": PTC_ON})
    cached.has_resource_properties(
        "AWS::ECR::PullThroughCacheRule",
        {
            "EcrRepositoryPrefix": "d1-ghcr",
            "UpstreamRegistryUrl": "ghcr.io",
            "CredentialArn": Match.string_like_regexp(":secret:ecr-pullthroughcache/"),
        },
    )
    base = json.dumps(_build_variables(cached)["BASE_IMAGE"])
    assert "ghcr.io" not in base and "/d1-ghcr/example/vllm-efa:v1@sha256:" in base


def _image_stack(tmp_path: Path, image: dict) -> Template:
    """Synthesize the image stack alone (it needs nothing else)."""
    app = cdk.App(outdir=str(tmp_path))
    stack = ImageStack(app, "image", props=ImageProps(config=ImageConfig.model_validate(image), deployment_name="d1"))
    return Template.from_stack(stack)


def _build_variables(template: Template) -> dict:
    (project,) = template.find_resources("AWS::CodeBuild::Project").values()
    return {v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}


def _image_stack_tag(tmp_path: Path, image: dict) -> str:
    """The tag the image stack's build is told to push."""
    return _build_variables(_image_stack(tmp_path, image))["IMAGE_TAG"]


def test_an_existing_pull_through_rule_is_adopted_not_created(tmp_path: Path) -> None:
    """A rule's prefix is unique per account and region: a second deployment can use the rule another one made."""
    template = _image_stack(
        tmp_path,
        {
            **GHCR_BASE,
            "pull_through_cache": {"enabled": True, "create_rule": False, "repository_prefix": "shared-ghcr"},
        },
    )
    template.resource_count_is("AWS::ECR::PullThroughCacheRule", 0)
    assert "/shared-ghcr/example/vllm-efa:" in json.dumps(_build_variables(template)["BASE_IMAGE"])


def test_image_tag_follows_every_build_input(tmp_path: Path) -> None:
    base = load_yaml("default.yaml").get("image") or {}
    tags = {"as configured": _image_stack_tag(tmp_path / "base", base)}
    tags["another base tag"] = _image_stack_tag(tmp_path / "tag", {**base, "base_tag": "another"})
    tags["a base digest"] = _image_stack_tag(tmp_path / "digest", {**base, "base_digest": "sha256:" + "1" * 64})
    tags["a ghcr.io base"] = _image_stack_tag(tmp_path / "ghcr", {**base, **GHCR_BASE})
    tags["pull-through cache on"] = _image_stack_tag(
        tmp_path / "ptc", {**base, **GHCR_BASE, "pull_through_cache": PTC_ON}
    )
    assert len(set(tags.values())) == len(tags), tags
    assert _image_stack_tag(tmp_path / "again", base) == tags["as configured"]  # and nothing else moves it


def test_the_build_wait_fits_what_cloudformation_allows(default: Synthesized) -> None:
    """A custom resource gets at most an hour; the waiter must give up before that, and the build before the waiter."""
    (project,) = default.image.find_resources("AWS::CodeBuild::Project").values()
    build_minutes = project["Properties"]["TimeoutInMinutes"]
    (machine,) = default.image.find_resources("AWS::StepFunctions::StateMachine").values()
    definition = json.dumps(machine["Properties"]["DefinitionString"])
    attempts = int(re.search(r'MaxAttempts\\\\?":(\d+)', definition).group(1))
    interval = int(re.search(r'IntervalSeconds\\\\?":(\d+)', definition).group(1))
    assert attempts * interval < 3600, (attempts, interval)
    assert build_minutes * 60 < attempts * interval


def _run_phases(tmp_path: Path, base_image: str, tag_digest: str) -> tuple[int, list[str], str]:
    """The buildspec's pre_build and build phases in one bash (as CodeBuild runs them: variables carry over), with
    docker and aws replaced by recorders; docker reports that the pulled tag resolves to ``tag_digest``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool, body in {
        "docker": (
            f'echo "docker $*" >> {calls}\n'
            f'[ "$1 $2" = "image inspect" ] && echo "other.example/mirror@sha256:{"9" * 64} ${{@: -1}}"'
            f' | sed "s|:[^ :@]*$|@{tag_digest}|"\nexit 0'
        ),
        "aws": f'echo "aws $*" >> {calls}\n[ "$2" = describe-images ] && exit 1\nexit 0',
    }.items():
        path = bin_dir / tool
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "container" / "buildspec.yml").read_text())
    script = "set -e\n" + "\n".join(spec["phases"]["pre_build"]["commands"] + spec["phases"]["build"]["commands"])
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "REPOSITORY_URI": "123456789012.dkr.ecr.us-east-2.amazonaws.com/pdstack/serving",
        "IMAGE_TAG": "abc",
        "BASE_IMAGE": base_image,
    }
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    return result.returncode, calls.read_text().splitlines() if calls.exists() else [], result.stdout


CACHED = "123456789012.dkr.ecr.us-east-2.amazonaws.com/ghcr/example/vllm-efa"
CACHED_BASE = f"{CACHED}:v1@sha256:" + "a" * 64


def test_cached_base_is_pulled_by_tag_first_then_checked(tmp_path: Path) -> None:
    """ECR's pull-through cache fills on a pull by tag; the build then uses the pinned digest."""
    code, calls, _ = _run_phases(tmp_path, CACHED_BASE, "sha256:" + "a" * 64)
    assert code == 0, calls
    assert f"docker pull {CACHED}:v1" in calls
    (build,) = [call for call in calls if call.startswith("docker build")]
    assert f"BASE_IMAGE={CACHED}@sha256:{'a' * 64} " in build


def test_cached_base_whose_tag_moved_fails_the_build(tmp_path: Path) -> None:
    code, calls, _ = _run_phases(tmp_path, CACHED_BASE, "sha256:" + "b" * 64)
    assert code != 0 and not [call for call in calls if call.startswith("docker build")]


def test_unpinned_base_is_built_at_the_digest_its_tag_resolved_to_and_recorded(tmp_path: Path) -> None:
    """No digest pinned (the default: none is published where it could be read): the build reads the digest the tag
    resolved to, prints it, builds on exactly it and labels the image with it."""
    base = ImageConfig().base_image
    assert "@" not in base
    resolved = "sha256:" + "d" * 64
    code, calls, out = _run_phases(tmp_path, base, resolved)
    assert code == 0, calls
    assert f"docker pull {base}" in calls
    repository = base.rsplit(":", 1)[0]
    (build,) = [call for call in calls if call.startswith("docker build")]
    assert f"BASE_IMAGE={repository}@{resolved} " in build and f"BASE_DIGEST={resolved} " in build
    assert f"resolved to {resolved}" in out
