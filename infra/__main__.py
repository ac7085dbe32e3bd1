"""``python -m infra status|wait|smoke``: know what a deployed environment is doing.

Exit codes: 0 ready (or smoke passed), 1 not ready (or smoke failed), 2 the deployment cannot be read or the command
was used wrongly. Errors a user causes print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pydantic import ValidationError

from infra.config import Deployment, DeploymentError, ServingUnit, load_deployment
from infra.operations.aws_access import AccessError, AwsAccess, open_access
from infra.operations.aws_facts import EksCluster, read_eks_cluster, read_stack
from infra.operations.kube_client import BadApiServer, KubeClient, KubeRefused, KubeUnreachable, eks_token
from infra.operations.serving_endpoints import ServingEndpoints
from infra.operations.smoke import SMOKE_IMAGE, SmokeError, SmokeRun, render, result_as_json
from infra.operations.status import StatusReader, render_json, render_table
from infra.operations.wait import Waiter, parse_duration
from infra.stack_outputs import ClusterOutputs, stack_name

READY, NOT_READY, UNUSABLE = 0, 1, 2


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{status,wait,smoke}")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--deployment", required=True, metavar="FILE", help="deployments/NAME.yaml")
    common.add_argument("--region", help="for environment-agnostic deployments (the file's region wins otherwise)")
    common.add_argument(
        "--api-server",
        metavar="URL",
        help="reach the Kubernetes API here instead of the cluster endpoint "
        "(e.g. http://127.0.0.1:8001 from `kubectl proxy` to a private cluster)",
    )

    status = commands.add_parser("status", parents=[common], help="is the deployed environment ready, and if not why")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    wait = commands.add_parser("wait", parents=[common], help="poll until ready, failed, or the timeout")
    wait.add_argument("--timeout", type=_duration, default=parse_duration("45m"), help="e.g. 45m, 1h30m (default 45m)")
    wait.add_argument("--interval", type=_duration, default=parse_duration("30s"), help="between polls (default 30s)")

    smoke = commands.add_parser(
        "smoke", parents=[common], help="one request through the router, from inside the cluster"
    )
    defaults = ServingEndpoints()
    smoke.add_argument(
        "--model", metavar="NAME", help="the models entry to test (default: every model, one after the other)"
    )
    smoke.add_argument("--namespace", help="default: the model's namespace (the deployment's workloads.namespace)")
    smoke.add_argument("--router-service", default=defaults.router_service)
    smoke.add_argument("--router-port", type=int, default=defaults.router_port)
    smoke.add_argument("--router-metrics-port", type=int, default=defaults.router_metrics_port)
    smoke.add_argument("--decode-service", default=defaults.decode_service)
    smoke.add_argument("--decode-port", type=int, default=defaults.decode_port)
    smoke.add_argument("--image", default=SMOKE_IMAGE, help="image of the smoke Job (needs python3)")
    smoke.add_argument("--timeout", type=_duration, default=parse_duration("5m"), help="for the Job (default 5m)")
    smoke.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _kube_factory(aws: AwsAccess, api_server: str | None, always: bool):
    """A KubeClient for the cluster: through --api-server, or the cluster endpoint when reachable from here."""

    def make(cluster: EksCluster) -> KubeClient | None:
        server = api_server or (cluster.endpoint if (always or cluster.vpc.public) else None)
        if server is None:
            return None
        return KubeClient(
            server=server, token=eks_token(aws.session, aws.region, cluster.name), ca_data=cluster.ca_data
        )

    return make


def _status(args: argparse.Namespace, out: TextIO) -> int:
    deployment = load_deployment(args.deployment)
    aws = open_access(deployment, args.deployment, args.region)
    reader = StatusReader(deployment, args.deployment, aws, _kube_factory(aws, args.api_server, always=False))
    if args.command == "status":
        status = reader.read()
        print(render_json(status) if args.json else render_table(status), file=out)
        return READY if status.ready else NOT_READY
    return Waiter(observe=reader.read, timeout=args.timeout, interval=args.interval, out=out).run()


def _serving_units(deployment: Deployment, name: str | None) -> list[ServingUnit]:
    """The unit ``--model`` names, or every unit when it names none."""
    units = deployment.units
    if name is None:
        return units
    for unit in units:
        if unit.name == name:
            return [unit]
    if not deployment.several_models:
        raise AccessError(f"--model {name}: {deployment.name} serves one model, from its serving section; drop --model")
    names = ", ".join(str(unit.name) for unit in units)
    raise AccessError(f"--model {name}: not a model of {deployment.name}; its models: {names}")


def _endpoints(args: argparse.Namespace, unit: ServingUnit) -> ServingEndpoints:
    try:
        return ServingEndpoints(
            namespace=args.namespace or unit.namespace,
            router_service=args.router_service,
            router_port=args.router_port,
            router_metrics_port=args.router_metrics_port,
            decode_service=args.decode_service,
            decode_port=args.decode_port,
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise AccessError(f"--{str(problem['loc'][0]).replace('_', '-')}: {problem['msg']}") from None


def _smoke(args: argparse.Namespace, out: TextIO) -> int:
    """One request through each chosen unit's router, one unit after the other; passes when every unit passes."""
    deployment = load_deployment(args.deployment)
    units = _serving_units(deployment, args.model)
    if len(units) > 1 and args.namespace is not None:
        raise AccessError(f"--namespace holds one model's workloads: name it with --model ({len(units)} models)")
    endpoints = {unit.name: _endpoints(args, unit) for unit in units}
    aws = open_access(deployment, args.deployment, args.region)
    stack = read_stack(aws, stack_name(deployment.name, "cluster"))
    if stack is None or ClusterOutputs.CLUSTER_NAME not in stack.outputs:
        raise AccessError(
            f"not deployed: stack {stack_name(deployment.name, 'cluster')} has no cluster in {aws.region} yet; "
            "run `python -m infra status` to see what is there"
        )
    cluster = read_eks_cluster(aws, stack.outputs[ClusterOutputs.CLUSTER_NAME])
    if cluster is None or cluster.status != "ACTIVE":
        raise AccessError(
            f"the EKS cluster {stack.outputs[ClusterOutputs.CLUSTER_NAME]} is not ACTIVE; "
            "run `python -m infra wait` first"
        )
    kube = _kube_factory(aws, args.api_server, always=True)(cluster)
    assert kube is not None
    say = (lambda line: print(line, file=sys.stderr)) if args.json else (lambda line: print(line, file=out))
    several = len(units) > 1
    passed = True
    reports: dict[str, Any] = {}
    for unit in units:
        if several:
            say(f"model {unit.name} (namespace {unit.namespace}):")
        run = SmokeRun(
            kube,
            endpoints[unit.name],
            unit.serving.model.served_name,
            image=args.image,
            timeout=args.timeout,
            placement=deployment.system_placement,
            say=say,
        )
        try:
            result = run.run()
        except KubeUnreachable as exc:
            raise AccessError(
                f"cannot reach the Kubernetes API ({exc}): a private endpoint needs a tunnel "
                "(--api-server) or a machine inside the VPC"
            ) from None
        except KubeRefused as exc:
            raise AccessError(
                f"access denied by the Kubernetes API for {aws.arn} ({exc}); "
                "add it to cluster.admin_principal_arns and deploy"
            ) from None
        except SmokeError as exc:
            print(f"smoke FAILED{f' (model {unit.name})' if several else ''}: {exc}", file=out)
            passed = False
            continue
        passed &= result.passed
        if args.json and several:
            reports[str(unit.name)] = json.loads(result_as_json(result))
        else:
            print(result_as_json(result) if args.json else render(result), file=out)
    if reports:
        print(json.dumps(reports, indent=2), file=out)
    return READY if passed else NOT_READY


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error
        return UNUSABLE if exc.code else READY
    try:
        if args.command == "smoke":
            return _smoke(args, out)
        return _status(args, out)
    except (DeploymentError, AccessError) as exc:
        print(f"error: {exc}", file=err)
        return UNUSABLE
    except BadApiServer as exc:
        print(f"error: {exc}", file=err)
        return UNUSABLE
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return NOT_READY


if __name__ == "__main__":
    sys.exit(main())
