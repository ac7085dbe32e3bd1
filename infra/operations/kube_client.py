"""A small Kubernetes API client for an EKS cluster: the few calls ``status`` and ``smoke`` make, nothing more.

Authentication is the standard EKS bearer token (what ``aws eks get-token`` prints): a presigned STS
GetCallerIdentity URL that names the cluster in the signed ``x-k8s-aws-id`` header, base64url-encoded behind
``k8s-aws-v1.``. The API server hands it to STS and maps the returned identity through the cluster's access entries,
so the caller needs an access entry (``cluster.admin_principal_arns``), not a kubeconfig.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
TOKEN_LIFETIME_SECONDS = 60  # what aws-iam-authenticator accepts; we make a fresh one per request anyway


class KubeUnreachable(Exception):
    """The API server could not be reached (private endpoint, network, TLS)."""


class KubeRefused(Exception):
    """The API server answered 401/403: the caller's identity has no access entry (or not enough rights)."""


class KubeError(Exception):
    """Any other unexpected answer."""


class BadApiServer(ValueError):
    """An API server URL we will not send a token to."""


def eks_token(session: boto3.Session, region: str, cluster_name: str) -> str:
    """The EKS bearer token for ``cluster_name`` from the session's credentials."""
    sts = session.client("sts", region_name=region)

    def name_the_cluster(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_ID_HEADER] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", name_the_cluster)
    url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=TOKEN_LIFETIME_SECONDS, HttpMethod="GET")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class KubeClient:
    """Talks to ``server`` (https with the cluster CA; plain http only to a loopback tunnel or ``kubectl proxy``)."""

    server: str
    token: str
    ca_data: str | None = None  # base64 PEM, as EKS DescribeCluster returns it
    timeout: float = 10.0

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.server)
        if parsed.scheme == "http" and not _is_loopback(parsed.hostname or ""):
            raise BadApiServer(f"{self.server}: plain http is only for a local tunnel (127.0.0.1); use https")
        if parsed.scheme not in ("http", "https"):
            raise BadApiServer(f"{self.server}: the API server URL must start with https://")
        self.server = self.server.rstrip("/")
        self._tls: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            self._tls = ssl.create_default_context()
            if self.ca_data:
                self._tls.load_verify_locations(cadata=base64.b64decode(self.ca_data).decode())

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, raw: bool = False) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "text/plain" if raw else "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._tls) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("message", detail)
            except (ValueError, AttributeError):
                pass
            if exc.code in (401, 403):
                raise KubeRefused(f"{method} {path}: {exc.code} {detail}".strip()) from None
            raise KubeError(f"{method} {path}: {exc.code} {detail}".strip()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KubeUnreachable(f"{self.server}: {reason}") from None
        return payload.decode(errors="replace") if raw else json.loads(payload or b"{}")

    # --- the calls ------------------------------------------------------------------------------------------------

    def list_nodes(self, label_selector: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"labelSelector": label_selector})
        return self._call("GET", f"/api/v1/nodes?{query}").get("items", [])

    def create_job(self, namespace: str, job: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job)

    def read_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

    def delete_job(self, namespace: str, name: str) -> None:
        # Background propagation: the Job's pod goes too.
        self._call("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}?propagationPolicy=Background")

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"labelSelector": f"job-name={job_name}"})
        return self._call("GET", f"/api/v1/namespaces/{namespace}/pods?{query}").get("items", [])

    def pod_log(self, namespace: str, pod: str) -> str:
        return self._call("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", raw=True)


def node_is_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
