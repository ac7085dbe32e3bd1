"""Puts the model where vLLM can read it before the worker execs: an ``s3://`` source is downloaded to the node's
cache directory (parallel, resumable, skipping files already there at the same size); a local path is checked; a
Hugging Face id is left to vLLM (only allowed when the configuration grants hub access).

Several engines on one node share the cache directory (a hostPath) and may fetch the same model at once: each file is
written under an exclusive lock (flock on a file of the sibling directory ``.<model dir>.locks``, outside what vLLM
reads; the kernel releases it if the holder dies), so one engine downloads it while the others wait and then find it
complete.

boto3 takes its endpoint, region and credentials from the usual AWS chain (IRSA / Pod Identity in the cluster;
``AWS_ENDPOINT_URL_S3`` for an S3-compatible server).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import BaseModel, ConfigDict

from runtime.config import Model
from runtime.json_log import EventLog

_CHUNK = 8 * 1024 * 1024
log = EventLog("runtime.model_fetch")


class ModelFetchError(RuntimeError):
    """The model cannot be made available on this node; the message says why and what to check."""


class S3Object(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    relative: str
    size: int


TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "chat_template.json",
        "generation_config.json",
        "config.json",
    }
)
"""The files the router needs to tokenize like the engines (and apply the chat template): no weights."""


class ModelFetch:
    """``only``: fetch just the files whose path under the model prefix is in this set (e.g. TOKENIZER_FILES);
    ``cache_dir``: put them under this directory instead of ``serving.model.cache_dir``."""

    def __init__(
        self,
        model: Model,
        s3_client: Callable[[], Any] | None = None,
        parallel: int = 16,
        *,
        only: frozenset[str] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.model = model
        self._s3_client = s3_client or (lambda: boto3.session.Session().client("s3"))
        self.parallel = parallel
        self.only = only
        self.cache_dir = cache_dir or model.cache_dir

    @property
    def bucket_and_prefix(self) -> tuple[str, str]:
        bucket, _, prefix = self.model.source.removeprefix("s3://").partition("/")
        return bucket, prefix.strip("/")

    def local_path(self) -> str:
        """What vLLM is given as the model: the cache directory of an S3 source, else the source itself."""
        if self.model.source_kind != "s3":
            return self.model.source
        bucket, prefix = self.bucket_and_prefix
        return str(Path(self.cache_dir, bucket, *PurePosixPath(prefix).parts))

    def ensure(self) -> str:
        """Make the model available and return the path (or id) to give vLLM."""
        kind = self.model.source_kind
        if kind == "local":
            if not Path(self.model.source).exists():
                raise ModelFetchError(f"serving.model.source={self.model.source!r}: no such path on this node")
            return self.model.source
        if kind == "hub":
            log.info("model_from_hub", source=self.model.source)
            return self.model.source
        return self._fetch_s3()

    def reachable(self) -> tuple[bool, str]:
        """Whether the model can be had from here, and a one-line reason (preflight's model check)."""
        kind = self.model.source_kind
        if kind == "local":
            if Path(self.model.source).exists():
                return True, f"{self.model.source} present"
            return False, f"{self.model.source}: no such path on this node"
        if kind == "hub":
            return True, f"{self.model.source}: Hugging Face id, fetched by vLLM at start (hub access allowed)"
        bucket, prefix = self.bucket_and_prefix
        try:
            page = self._s3_client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
        except NoCredentialsError:
            return False, f"no AWS credentials to read {self.model.source}"
        except (ClientError, BotoCoreError) as error:
            return False, f"{self.model.source}: {error}"
        if not page.get("Contents"):
            return False, f"no objects under {self.model.source}"
        return True, f"{self.model.source} listable"

    def _fetch_s3(self) -> str:
        bucket, prefix = self.bucket_and_prefix
        target = Path(self.local_path())
        client = self._s3_client()
        objects = self._list(client, bucket, prefix)
        total = sum(obj.size for obj in objects)
        log.info("model_fetch_start", source=self.model.source, target=str(target), files=len(objects), bytes=total)
        done_bytes = 0
        skipped = 0
        with ThreadPoolExecutor(max_workers=max(1, min(self.parallel, len(objects)))) as pool:
            futures = {pool.submit(self._download, client, bucket, obj, target): obj for obj in objects}
            for count, future in enumerate(as_completed(futures), start=1):
                obj = futures[future]
                try:
                    fetched = future.result()
                except (ClientError, BotoCoreError, OSError) as error:
                    raise ModelFetchError(f"downloading s3://{bucket}/{obj.key} failed: {error}") from error
                skipped += not fetched
                done_bytes += obj.size
                log.info(
                    "model_fetch_progress",
                    file=obj.relative,
                    skipped=not fetched,
                    files_done=count,
                    files=len(objects),
                    bytes_done=done_bytes,
                    bytes=total,
                )
        log.info("model_fetch_done", target=str(target), files=len(objects), skipped=skipped, bytes=total)
        return str(target)

    def _list(self, client: Any, bucket: str, prefix: str) -> list[S3Object]:
        listing_prefix = f"{prefix}/" if prefix else ""
        objects: list[S3Object] = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=listing_prefix):
                for item in page.get("Contents", []):
                    key: str = item["Key"]
                    if key.endswith("/"):
                        continue
                    relative = key[len(listing_prefix) :]
                    if ".." in PurePosixPath(relative).parts:
                        raise ModelFetchError(f"refusing S3 key {key!r}: it escapes the model directory")
                    if self.only is not None and relative not in self.only:
                        continue
                    objects.append(S3Object(key=key, relative=relative, size=item["Size"]))
        except NoCredentialsError as error:
            raise ModelFetchError(
                f"no AWS credentials to read {self.model.source}: give the pod's service account an IAM role "
                "(IRSA or EKS Pod Identity) with s3:ListBucket and s3:GetObject"
            ) from error
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise ModelFetchError(
                    f"S3 bucket {bucket!r} does not exist (serving.model.source={self.model.source!r})"
                ) from error
            if code in ("AccessDenied", "403"):
                raise ModelFetchError(
                    f"access denied listing {self.model.source}: the pod's IAM role needs s3:ListBucket on "
                    f"arn:aws:s3:::{bucket} and s3:GetObject on its objects"
                ) from error
            raise ModelFetchError(f"listing {self.model.source} failed: {error}") from error
        if not objects:
            raise ModelFetchError(f"no objects under {self.model.source} (serving.model.source): nothing to serve")
        return objects

    @staticmethod
    def _download(client: Any, bucket: str, obj: S3Object, target: Path) -> bool:
        """Download one object; False when it was already present at the same size. Resumes a ``.part`` file.
        Holds the file's lock throughout: the ``.part`` file is written by one process at a time."""
        dest = target.joinpath(*PurePosixPath(obj.relative).parts)
        if dest.is_file() and dest.stat().st_size == obj.size:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        lock_path = target.with_name(f".{target.name}.locks").joinpath(*PurePosixPath(obj.relative + ".lock").parts)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Another engine may have finished it while this one waited for the lock.
            if dest.is_file() and dest.stat().st_size == obj.size:
                return False
            return ModelFetch._download_locked(client, bucket, obj, dest)

    @staticmethod
    def _download_locked(client: Any, bucket: str, obj: S3Object, dest: Path) -> bool:
        part = dest.with_name(dest.name + ".part")
        offset = part.stat().st_size if part.is_file() else 0
        if offset > obj.size:
            offset = 0
        if offset < obj.size or obj.size == 0:
            request: dict[str, str] = {"Bucket": bucket, "Key": obj.key}
            if offset:
                request["Range"] = f"bytes={offset}-"
            body = client.get_object(**request)["Body"]
            with open(part, "ab" if offset else "wb") as sink:
                for chunk in body.iter_chunks(_CHUNK):
                    sink.write(chunk)
        size = part.stat().st_size
        if size != obj.size:
            raise OSError(f"{part}: got {size} bytes, expected {obj.size}")
        os.replace(part, dest)
        return True
