"""The caller's AWS access: one boto3 session for the deployment's region, and one clear line for each user error.

Errors a user causes (no credentials, wrong region or account, access denied, expired session) become
``AccessError`` with a message meant to be printed as it is. Anything else from botocore is a bug or an AWS outage
and propagates.

Endpoints come from boto3's standard configuration: ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` point
the commands at another API server (the tests use a local one), with no switch of our own.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from infra.config import Deployment

# Retries with backoff for throttling; short connect timeout so an unreachable endpoint is said quickly.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=10, read_timeout=30)

_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "UnauthorizedException",
}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_REJECTED = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "InvalidAccessKeyId",
    "IncompleteSignature",
}


class AccessError(Exception):
    """An error the user can fix; ``str()`` is one line that says what and how."""


def known_regions(session: boto3.Session) -> set[str]:
    """Every region botocore knows, in every partition (offline: botocore's bundled endpoint data)."""
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("cloudformation", partition_name=partition))
    return regions


def choose_region(deployment: Deployment, source: str, override: str | None, session: boto3.Session) -> str:
    """The deployment's region wins; ``--region`` must agree with it; env-agnostic deployments need one from outside."""
    if deployment.region is not None and override is not None and override != deployment.region:
        raise AccessError(
            f"wrong region: {source} deploys to {deployment.region}, not {override}; drop --region or fix the file"
        )
    region = deployment.region or override or session.region_name
    if region is None:
        raise AccessError(f"no AWS region: {source} names none (environment-agnostic); pass --region or set AWS_REGION")
    regions = known_regions(session)
    if region not in regions:
        hint = f" (did you mean {close}?)" if (close := _closest(region, regions)) else ""
        raise AccessError(f"wrong region: {region!r} is not an AWS region{hint}")
    return region


def _closest(typed: str, regions: set[str]) -> str | None:
    """The region the user most likely meant: swapped letters first (same letters), then the most similar."""

    def distance(candidate: str) -> tuple[bool, float]:
        return sorted(candidate) != sorted(typed), -difflib.SequenceMatcher(None, candidate, typed).ratio()

    best = min(regions, key=distance, default=None)
    return best if best is not None and -distance(best)[1] >= 0.6 else None


@dataclass
class AwsAccess:
    """A boto3 session in one region, with the identity it acts as."""

    session: boto3.Session
    region: str
    account: str = ""
    arn: str = ""
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region, config=_CLIENT_CONFIG)
        return self._clients[service]

    @contextmanager
    def calling(self, service: str) -> Iterator[None]:
        """Turn the botocore errors a user causes into one AccessError line; let the rest through."""
        try:
            yield
        except botocore.exceptions.NoCredentialsError:
            raise AccessError(
                "no AWS credentials: set AWS_PROFILE (then `aws sso login` if it uses SSO) or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, and check with `aws sts get-caller-identity`"
            ) from None
        except botocore.exceptions.PartialCredentialsError as exc:
            raise AccessError(f"incomplete AWS credentials: {exc}") from None
        except (
            botocore.exceptions.TokenRetrievalError,
            botocore.exceptions.SSOTokenLoadError,
            botocore.exceptions.UnauthorizedSSOTokenError,
        ):
            raise AccessError("the AWS SSO session has expired or was never started: run `aws sso login`") from None
        except botocore.exceptions.EndpointConnectionError as exc:
            raise AccessError(
                f"cannot reach the AWS {service} endpoint for {self.region} ({exc.kwargs.get('endpoint_url')}): "
                "wrong region, or no network"
            ) from None
        except botocore.exceptions.ClientError as exc:
            raise self._explain(service, exc) from None

    def _explain(self, service: str, exc: botocore.exceptions.ClientError) -> Exception:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        action = f"{service}:{exc.operation_name}"
        who = self.arn or "the caller"
        if code in _DENIED:
            return AccessError(f"access denied: {who} may not call {action} in {self.region} ({code})")
        if code in _EXPIRED:
            return AccessError(f"the AWS credentials have expired ({code}): refresh them (`aws sso login`) and retry")
        if code in _REJECTED:
            return AccessError(
                f"AWS rejected the credentials for {action} in {self.region} ({code}): they are invalid, or the region "
                "is not enabled for this account"
            )
        return exc

    def whoami(self) -> None:
        with self.calling("sts"):
            identity = self.client("sts").get_caller_identity()
        self.account, self.arn = identity["Account"], identity["Arn"]


def open_access(deployment: Deployment, source: str, region: str | None) -> AwsAccess:
    """Resolve the region, learn who the caller is, and check the account is the deployment's."""
    try:
        session = boto3.Session()
    except botocore.exceptions.ProfileNotFound as exc:
        raise AccessError(f"no AWS credentials: {exc}") from None
    access = AwsAccess(session=session, region=choose_region(deployment, source, region, session))
    access.whoami()
    if deployment.account is not None and access.account != deployment.account:
        raise AccessError(
            f"wrong account: the credentials are for {access.account} ({access.arn}) but {source} deploys to "
            f"{deployment.account}; switch AWS_PROFILE"
        )
    return access
