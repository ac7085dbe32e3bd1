"""Which network NCCL selects on this node, read from NCCL's own INFO log: for preflight, so a multi-node replica on
EFA does not run its collectives (data-parallel sync, the expert all-to-all) over TCP sockets without anyone noticing.

NCCL names the network it loaded once per communicator at INFO level: "NCCL INFO Using network Libfabric" when the
aws-ofi-nccl plugin loaded ("AWS Libfabric" in older plugin releases), "Using network Socket" when it fell back to TCP
(lines recorded in NVIDIA/nccl issue #1597 on p5en and in uccl-project/uccl issue #734, whose vLLM EP runs on p5 fell
back to sockets when the plugin was on the wrong path). aws-ofi-nccl then logs "NET/OFI Selected provider is efa".

The probe starts one process with a one-rank NCCL communicator (torch.distributed, as vLLM uses it) and the worker's
fabric environment, ``NCCL_DEBUG=INFO`` and ``NCCL_DEBUG_SUBSYS=INIT,NET``; it needs a GPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping

from pydantic import BaseModel, ConfigDict

_USING_NETWORK = re.compile(r"NCCL INFO Using network (?P<name>.+?)\s*$")
_OFI_PROVIDER = re.compile(r"NET/OFI Selected [Pp]rovider is (?P<provider>[\w-]+)")

PROBE_SCRIPT = """
import os, torch, torch.distributed as dist
torch.cuda.set_device(0)
dist.init_process_group("nccl", init_method="tcp://127.0.0.1:" + os.environ["PDSTACK_NCCL_PROBE_PORT"],
                        rank=0, world_size=1)
tensor = torch.ones(1, device="cuda")
dist.all_reduce(tensor)
torch.cuda.synchronize()
dist.destroy_process_group()
"""


class NcclNetwork(BaseModel):
    """What NCCL's log says it selected."""

    model_config = ConfigDict(frozen=True)

    network: str | None
    ofi_provider: str | None

    @property
    def libfabric(self) -> bool:
        return self.network is not None and "libfabric" in self.network.lower()

    @classmethod
    def from_log(cls, lines: Iterable[str]) -> NcclNetwork:
        network = provider = None
        for line in lines:
            if network is None and (match := _USING_NETWORK.search(line)):
                network = match["name"]
            if provider is None and (match := _OFI_PROVIDER.search(line)):
                provider = match["provider"]
        return cls(network=network, ofi_provider=provider)


class NcclProbeError(RuntimeError):
    """The probe could not start NCCL at all; the message carries the end of its output."""


Runner = Callable[[Mapping[str, str]], tuple[int, str]]


def run_probe(env: Mapping[str, str], timeout_s: float = 120.0) -> tuple[int, str]:
    """Run the one-rank NCCL probe in a child interpreter; return its exit code and combined output."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", PROBE_SCRIPT],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        partial = expired.stdout or ""
        text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        return 124, text + f"\nthe NCCL probe did not finish in {timeout_s:.0f} s"
    return result.returncode, result.stdout + result.stderr


def probe_nccl_network(fabric_env: Mapping[str, str], port: int = 29599, run: Runner = run_probe) -> NcclNetwork:
    """Start NCCL with the worker's fabric environment laid over this process's and read what it selected."""
    env = {
        **os.environ,
        **fabric_env,
        "NCCL_DEBUG": "INFO",
        "NCCL_DEBUG_SUBSYS": "INIT,NET",
        "PDSTACK_NCCL_PROBE_PORT": str(port),
    }
    code, output = run(env)
    found = NcclNetwork.from_log(output.splitlines())
    if code != 0 and found.network is None:
        raise NcclProbeError(f"the NCCL probe exited {code} before NCCL chose a network: {output[-400:].strip()}")
    return found
