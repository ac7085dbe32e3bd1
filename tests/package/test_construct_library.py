"""pdstack as an installable construct library (issue 25 item 1): the wheel built from the working tree, installed
with ``pip install --target`` into a directory of its own, and a team's CDK app (deployments/team_app) synthesized
from it outside the repository, with cdk-nag registered, then linted (cfn-lint) and scanned (checkov).

The wheel is built once per module (about a second) and each app synthesized once (about 15 s): the team's app, and
the same app on an existing VPC and EKS cluster (deployments/team_app_existing).
"""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path

import aws_cdk as cdk
import pytest
from packaging.requirements import Requirement

from infra.compliance.checkov_skips import CLOUDFORMATION
from infra.config import load_deployment
from infra.image.build_context import STAGED_CONTEXT, build_context_dir
from infra.image.stack import ImageProps, ServingImage
from tests.support.cfn_lint import cfn_lint_errors
from tests.support.checkov import run_checkov, unlisted
from tests.support.construct_library import (
    EXAMPLE_APP,
    EXISTING_PLATFORM_APP,
    VENV_BIN,
    UserApp,
    build_wheel,
    canonical,
    child_environment,
    install,
    requirement_pins,
    run_example_app,
    wheel_metadata,
    working_tree_files,
)
from tests.support.synthesis import REPO, example_deployment, synthesize

# requirements.txt pins the CDK app's venv, which also runs the repository's own checks: these two are tools of that
# venv (cfn-lint lints templates in tests; pytest runs the suite), not dependencies of the library.
VENV_TOOLS = {"cfn-lint", "pytest"}
RUNTIME_EXTRA = "runtime"
# Imported when installed, not required: botocore 1.44 tries `from certifi import where` and falls back to its own CA
# bundle (botocore/httpsession.py), and does not list certifi in its requirements.
OPTIONAL_IMPORTS = {"certifi"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(wheel, tmp_path_factory.mktemp("installed") / "site")


@pytest.fixture(scope="module")
def user_app(site: Path, tmp_path_factory: pytest.TempPathFactory) -> UserApp:
    return run_example_app(site, tmp_path_factory.mktemp("user"))


@pytest.fixture(scope="module")
def existing_platform_app(site: Path, tmp_path_factory: pytest.TempPathFactory) -> UserApp:
    """deployments/team_app_existing: the team's app on an existing VPC and EKS cluster, imported by their ids."""
    return run_example_app(site, tmp_path_factory.mktemp("user-existing"), EXISTING_PLATFORM_APP)


@pytest.fixture(params=["user_app", "existing_platform_app"])
def any_user_app(request: pytest.FixtureRequest) -> UserApp:
    return request.getfixturevalue(request.param)


def resources(template: dict, resource_type: str) -> dict[str, dict]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == resource_type}


def manifest_objects(manifest: str | dict) -> list[dict]:
    """A KubernetesManifest's objects; CDK renders one holding a token (the image URI) as Fn::Join of literal parts
    and references, which stand in as "<token>" here."""
    if isinstance(manifest, dict):
        _, parts = manifest["Fn::Join"]
        manifest = "".join(part if isinstance(part, str) else "<token>" for part in parts)
    return json.loads(manifest)


# --- the wheel ---------------------------------------------------------------------------------------------------


def test_the_wheel_requires_exactly_the_pins_of_the_requirements_files(wheel: Path) -> None:
    """One source of truth for versions: every Requires-Dist (dependencies and the runtime extra) is the pin of
    requirements.txt or runtime/requirements.txt, and every pin there is in the wheel or a venv-only tool."""
    required, extras = wheel_metadata(wheel)
    assert set(extras) == {RUNTIME_EXTRA}
    app_pins = requirement_pins(REPO / "requirements.txt")
    runtime_pins = requirement_pins(REPO / "runtime" / "requirements.txt")
    pins = app_pins | runtime_pins
    declared = required | extras[RUNTIME_EXTRA]
    assert {name: pins.get(name) for name in declared} == declared, "a Requires-Dist differs from its pin"
    assert set(pins) - set(declared) == VENV_TOOLS
    assert not set(required) & set(extras[RUNTIME_EXTRA])
    assert set(runtime_pins) <= set(declared), "the runtime's own dependencies are all in the wheel"
    assert "-r runtime/requirements.txt" in (REPO / "requirements.txt").read_text().splitlines()


def test_the_wheel_ships_every_file_of_infra_runtime_and_container(wheel: Path) -> None:
    """Every file infra and runtime may read (lifecycle scripts, rules, dashboards, policies, Lambda code) and the
    image's build files; and nothing else (no tests, no deployments, no top-level package but pdstack's three)."""
    shipped_as = {"infra/": "infra/", "runtime/": "runtime/", "container/": "pdstack/container/"}
    expected = {
        shipped_as[prefix] + path.removeprefix(prefix)
        for path in working_tree_files()
        for prefix in shipped_as
        if path.startswith(prefix)
    }
    expected |= {path for path in working_tree_files() if path.startswith("pdstack/")}
    with zipfile.ZipFile(wheel) as archive:
        files = {name for name in archive.namelist() if ".dist-info/" not in name}
    assert files == expected


def test_the_declared_dependencies_cover_what_pdstack_imports(wheel: Path, site: Path) -> None:
    """Every distribution that importing pdstack and every infra module loads is a declared dependency or one of
    theirs (resolved from this venv's installed metadata), so `pip install pdstack` is enough for a CDK app."""
    script = (
        "import importlib, json, pkgutil, sys\n"
        "at_start = set(sys.modules)\n"
        "import pdstack, infra\n"
        "for m in pkgutil.walk_packages(infra.__path__, 'infra.'):\n"
        "    if not m.name.endswith('__main__') and '.functions' not in m.name: importlib.import_module(m.name)\n"
        "from importlib.metadata import packages_distributions\n"
        "known = packages_distributions()\n"
        "loaded = [m for m in sys.modules if m not in at_start]\n"
        "print(json.dumps(sorted({d for m in loaded for d in known.get(m.split('.')[0], [])})))\n"
    )
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-c", script],
        cwd=site.parent,
        env=child_environment(site),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    imported = {canonical(name) for name in json.loads(result.stdout.splitlines()[-1])}

    def closure(names: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for line in metadata.requires(name) or []:
                requirement = Requirement(line)
                if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                    todo.append(canonical(requirement.name))
        return seen

    required, _ = wheel_metadata(wheel)
    assert imported - {"pdstack"} - set(OPTIONAL_IMPORTS) <= closure(set(required))


# --- a user's app from the installed package ---------------------------------------------------------------------


def test_the_user_app_imports_pdstack_from_the_installation_alone(any_user_app: UserApp, site: Path) -> None:
    for module, file in any_user_app.imported_from.items():
        assert Path(file).is_relative_to(site), f"{module} came from {file}"
    assert not any_user_app.directory.is_relative_to(REPO)


def test_the_user_app_is_nag_clean(any_user_app: UserApp) -> None:
    report = json.loads((any_user_app.outdir / "validation-report.json").read_text())
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert plugin["conclusion"] == "success" and plugin["violations"] == []
    assert plugin["suppressedViolations"], "pdstack's acknowledgements reached the constructs in the user's stacks"


def test_the_user_apps_stacks_hold_the_cluster_capacity_and_serving(user_app: UserApp) -> None:
    platform = user_app.template("TeamInferencePlatform")
    assert len(resources(platform, "AWS::EC2::VPC")) == 1
    (cluster,) = resources(platform, "AWS::EKS::Cluster").values()
    assert cluster["Properties"]["Name"] == "team-inference"
    groups = [group["Properties"]["Labels"] for group in resources(platform, "AWS::EKS::Nodegroup").values()]
    assert sorted(labels.get("pdstack.io/pool") or labels["pdstack.io/node-group"] for labels in groups) == [
        "p5",
        "system",
    ]
    assert len(resources(platform, "AWS::APS::Scraper")) == 1


def test_the_existing_platform_app_creates_no_vpc_or_cluster(existing_platform_app: UserApp) -> None:
    """The VPC and cluster are imported by their ids: no VPC, subnet, cluster or system node group; pdstack's kubectl
    access entry, the cluster check, and the GPU node group in the GPU subnet named in the settings."""
    platform = existing_platform_app.template("TeamInferencePlatform")
    for kind in ("AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EKS::Cluster", "AWS::EKS::Addon"):
        assert resources(platform, kind) == {}, kind
    (entry,) = resources(platform, "AWS::EKS::AccessEntry").values()
    assert entry["Properties"]["ClusterName"] == "platform-prod"
    assert len(resources(platform, "Custom::ExistingClusterCheck")) == 1
    (group,) = resources(platform, "AWS::EKS::Nodegroup").values()
    assert group["Properties"]["Subnets"] == ["subnet-0aaaaaaaaaaaaaaa1"]


def test_the_user_apps_serving_stack_holds_one_unit_per_model(any_user_app: UserApp) -> None:
    """Two models, two serving units in their own namespaces, each with its workers and router, and KEDA once."""
    serving = any_user_app.template("TeamModels")
    objects = [
        o
        for m in resources(serving, "Custom::AWSCDK-EKS-KubernetesResource").values()
        for o in manifest_objects(m["Properties"]["Manifest"])
    ]
    by_namespace: dict[str, set[str]] = {}
    for o in objects:
        namespace = o["metadata"].get("namespace")
        if namespace and o["kind"] in ("Deployment", "LeaderWorkerSet"):
            by_namespace.setdefault(namespace, set()).add(o["metadata"]["name"])
    workloads = {"pdstack-prefill", "pdstack-decode", "pdstack-router"}
    assert by_namespace == {"pdstack-llama-8b": workloads, "pdstack-llama-70b": workloads}
    assert len(resources(serving, "Custom::AWSCDK-EKS-HelmChart")) == 1, "KEDA, once for both units"


NODE_GROUP_FACTS = ("Labels", "Taints", "ScalingConfig", "InstanceTypes", "AmiType", "CapacityType", "DiskSize")


def serving_objects_of(templates: list[dict]) -> list[dict]:
    """Every object the templates' KubernetesManifests apply, in a stable order, without what names the stack holding
    them: the image URI (a token of the user's stack) and the prune label (a hash of the construct's path)."""
    objects = [
        o
        for template in templates
        for m in resources(template, "Custom::AWSCDK-EKS-KubernetesResource").values()
        for o in manifest_objects(m["Properties"]["Manifest"])
    ]
    text = re.sub(r'"image": "[^"]*"', '"image": "<image>"', json.dumps(objects))
    text = re.sub(r'"aws\.cdk\.eks/prune-[0-9a-f]+": "", ', "", text)
    return sorted(json.loads(text), key=lambda o: json.dumps(o, sort_keys=True))


def node_groups_of(templates: list[dict]) -> list[dict]:
    groups = [
        {fact: group["Properties"].get(fact) for fact in NODE_GROUP_FACTS}
        for template in templates
        for group in resources(template, "AWS::EKS::Nodegroup").values()
    ]
    return sorted(groups, key=lambda g: json.dumps(g, sort_keys=True))


@pytest.mark.parametrize(
    ("fixture", "example"), [("user_app", "team_app"), ("existing_platform_app", "team_app_existing")]
)
def test_the_example_holds_the_nodes_and_objects_pdstacks_app_builds_from_its_settings(
    request: pytest.FixtureRequest, fixture: str, example: str, tmp_path: Path
) -> None:
    """The example places pdstack's constructs with the props pdstack's app gives them: the same node groups and
    the same Kubernetes objects. So the checks that run over pdstack's app built from an example's settings (the
    schedulability rehearsal: tests/infra/test_schedulability.py, fixtures team_app and team_app_existing) hold for
    the example."""
    user: UserApp = request.getfixturevalue(fixture)
    theirs = [json.loads(path.read_text()) for path in user.templates()]
    synth = synthesize(example_deployment(example), tmp_path)
    ours = [json.loads(path.read_text()) for path in synth.template_files()]
    assert node_groups_of(theirs) == node_groups_of(ours)
    assert serving_objects_of(theirs) == serving_objects_of(ours)


def test_the_installed_image_is_tagged_as_the_repositorys(user_app: UserApp, tmp_path: Path) -> None:
    """The build context staged from the installation holds the same files as the repository's (the Dockerfile, the
    buildspec and the runtime), so the content-hashed tag is the same image the repository builds."""
    images = user_app.template("TeamModels")
    (build,) = resources(images, "Custom::PdstackImageBuild").values()
    staged = user_app.outdir / STAGED_CONTEXT
    assert (staged / "container" / "Dockerfile").is_file() and (staged / "runtime" / "config.py").is_file()

    deployment = load_deployment(EXAMPLE_APP / "deployment.yaml")
    app = cdk.App(outdir=str(tmp_path))
    image = ServingImage(
        cdk.Stack(app, "Repository"), "Image", props=ImageProps(config=deployment.image, deployment_name="x")
    )
    assert build["Properties"]["ImageTag"] == image.image_tag


def test_a_checkout_builds_its_image_from_the_repository_itself(tmp_path: Path) -> None:
    assert build_context_dir(tmp_path) == REPO
    assert not (tmp_path / STAGED_CONTEXT).exists()


def test_cfn_lint_reports_no_errors_on_the_user_app(any_user_app: UserApp) -> None:
    assert cfn_lint_errors(any_user_app.templates(), "us-east-1") == []


def test_checkov_findings_on_the_user_app_are_pdstacks_listed_skips(any_user_app: UserApp) -> None:
    """pdstack's accepted checkov findings follow its constructs into the user's stacks (the skips match by the end
    of the logical id), and the user's app has no other finding."""
    findings = run_checkov("cloudformation", any_user_app.templates())
    assert findings, "checkov reports the deploy-time handlers pdstack accepts"
    missing = unlisted(findings, CLOUDFORMATION)
    assert not missing, "\n".join(map(str, missing))


# --- a user's own package named like one of pdstack's -----------------------------------------------------------


@pytest.mark.parametrize("name", ["infra", "runtime"])
def test_a_users_package_shadowing_pdstacks_is_reported_with_what_to_rename(
    site: Path, tmp_path: Path, name: str
) -> None:
    """A platform repository's own infra/ (run from its root, it is first on sys.path) would otherwise be imported
    in place of pdstack's and fail far from the cause."""
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("# the team's own package\n")
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-c", "import pdstack"],
        cwd=tmp_path,
        env=child_environment(site),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: pdstack needs its own top-level package"), result.stderr[-2000:]
    assert str(tmp_path / name) in last and f"Rename yours (e.g. to 'platform_{name}')" in last


def test_the_readme_sample_is_the_tested_example() -> None:
    """The README's constructs sample is lines of deployments/team_app/app.py, in order (so it cannot drift)."""
    readme = (REPO / "README.md").read_text()
    (sample,) = re.findall(r"<!-- construct-library-sample -->\n```python\n(.*?)```", readme, flags=re.S)
    example = (EXAMPLE_APP / "app.py").read_text().splitlines()
    position = 0
    for line in sample.splitlines():
        if line.strip() in ("", "..."):
            continue
        assert line in example[position:], f"README line not in deployments/team_app/app.py (in order): {line!r}"
        position = example.index(line, position) + 1
