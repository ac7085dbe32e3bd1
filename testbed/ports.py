"""Free loopback ports for the servers a test or a benchmark starts.

The ports come from below the kernel's ephemeral range (net.ipv4.ip_local_port_range). A port from inside it
is free only until some process on the machine opens a connection or binds port 0: vLLM's engine opens dozens of
ZMQ and torch sockets while it starts, and one of them once took the decode server's NIXL side-channel port
between the choosing and the binding (CI: ``ZMQError: Address already in use``). Below the range only an explicit
bind can take a port. Within one process a port is never handed out twice."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000

_handed_out: set[int] = set()


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux's default when the file cannot be read)."""
    try:
        low, high = (int(field) for field in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def candidate_range(path: Path = EPHEMERAL_RANGE_FILE) -> range:
    """The ports to choose from: the largest stretch of [LOWEST, 65535] outside the ephemeral range."""
    low, high = ephemeral_range(path)
    below, above = range(LOWEST, max(LOWEST, low)), range(max(LOWEST, high + 1), 65536)
    return below if len(below) >= len(above) else above


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports outside the ephemeral range, free right now and not handed out before."""
    candidates = candidate_range()
    chosen: list[int] = []
    for port in random.sample(candidates, len(candidates)):
        if len(chosen) == count:
            break
        if port not in _handed_out and _bindable(port):
            chosen.append(port)
            _handed_out.add(port)
    if len(chosen) < count:
        raise RuntimeError(f"only {len(chosen)} of {count} free loopback ports in {candidates}")
    return chosen


def free_port_run(length: int) -> int:
    """The first of ``length`` consecutive free loopback ports (outside the ephemeral range, never handed out
    before), for a base port vLLM adds a data-parallel rank to (KV events, NIXL's side channel)."""
    candidates = candidate_range()
    for base in random.sample(candidates, len(candidates)):
        run = range(base, base + length)
        if run[-1] <= candidates[-1] and all(port not in _handed_out and _bindable(port) for port in run):
            _handed_out.update(run)
            return base
    raise RuntimeError(f"no {length} consecutive free loopback ports in {candidates}")
