"""A local NIXL transfer for preflight: two agents in this process, DRAM to DRAM through the chosen backend, timed,
with a plain memcpy of the same buffer beside it (the local limit the transfer is compared against)."""

from __future__ import annotations

import time
import uuid

from pydantic import BaseModel, ConfigDict


class NixlUnavailable(RuntimeError):
    """NIXL is not importable, or the backend plugin does not load."""


class LoopbackResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    backend: str
    bytes: int
    nixl_gbps: float
    memcpy_gbps: float


class NixlLoopback:
    def __init__(
        self, backend: str, size_bytes: int = 64 * 1024 * 1024, rounds: int = 4, timeout_s: float = 30.0
    ) -> None:
        self.backend = backend
        self.size_bytes = size_bytes
        self.rounds = rounds
        self.timeout_s = timeout_s

    def plugins(self) -> list[str]:
        """The NIXL plugins this node can load (raises NixlUnavailable when NIXL is missing)."""
        agent = self._agent("probe", backends=[])
        return list(agent.get_plugin_list())

    def measure(self) -> LoopbackResult:
        import numpy as np

        source = np.ones(self.size_bytes, dtype=np.uint8)
        target = np.zeros(self.size_bytes, dtype=np.uint8)
        np.copyto(target, source)  # fault both buffers in before timing anything
        started = time.perf_counter()
        for _ in range(self.rounds):
            np.copyto(target, source)
        memcpy_s = time.perf_counter() - started
        target[:] = 0

        sender = self._agent("sender", backends=[self.backend])
        receiver = self._agent("receiver", backends=[self.backend])
        source_region = (source.ctypes.data, self.size_bytes, 0)
        target_region = (target.ctypes.data, self.size_bytes, 0)
        sender_mem = sender.register_memory([(*source_region, "")], "DRAM")
        receiver_mem = receiver.register_memory([(*target_region, "")], "DRAM")
        try:
            peer = sender.add_remote_agent(receiver.get_agent_metadata())
            local = sender.get_xfer_descs([source_region], "DRAM")
            remote = receiver.get_xfer_descs([target_region], "DRAM")
            started = time.perf_counter()
            for _ in range(self.rounds):
                handle = sender.initialize_xfer("WRITE", local, remote, peer, b"preflight")
                state = sender.transfer(handle)
                deadline = time.monotonic() + self.timeout_s
                while state not in ("DONE", "ERR"):
                    if time.monotonic() > deadline:
                        raise NixlUnavailable(f"{self.backend} loopback transfer did not finish in {self.timeout_s} s")
                    state = sender.check_xfer_state(handle)
                sender.release_xfer_handle(handle)
                if state == "ERR":
                    raise NixlUnavailable(f"{self.backend} loopback transfer failed")
            nixl_s = time.perf_counter() - started
            if not bool((target == 1).all()):
                raise NixlUnavailable(f"{self.backend} loopback transfer reported DONE but the data did not arrive")
        finally:
            sender.deregister_memory(sender_mem)
            receiver.deregister_memory(receiver_mem)
        moved = self.size_bytes * self.rounds
        return LoopbackResult(
            backend=self.backend,
            bytes=self.size_bytes,
            nixl_gbps=moved / nixl_s / 1e9,
            memcpy_gbps=moved / memcpy_s / 1e9,
        )

    @staticmethod
    def _agent(role: str, backends: list[str]):
        try:
            from nixl._api import nixl_agent, nixl_agent_config
        except ImportError as error:
            raise NixlUnavailable(f"NIXL is not importable: {error}") from error
        try:
            return nixl_agent(f"pdstack-preflight-{role}-{uuid.uuid4().hex[:8]}", nixl_agent_config(backends=backends))
        except Exception as error:  # NIXL raises its own binding errors for a plugin that does not load
            raise NixlUnavailable(f"NIXL agent with backends {backends} could not start: {error}") from error
