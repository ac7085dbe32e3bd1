"""Ports for test servers come from outside the kernel's ephemeral range (where vLLM's own sockets can take them
between choosing and binding), are bindable, and are never handed out twice in one process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from testbed.ports import candidate_range, ephemeral_range, free_port_run, free_ports


def test_ports_are_outside_the_ephemeral_range_and_never_repeat() -> None:
    low, high = ephemeral_range()
    ports = free_ports(40) + free_ports(40)
    assert len(set(ports)) == 80
    assert not [port for port in ports if low <= port <= high]
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_not_handed_out(monkeypatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        holder.listen()
        monkeypatch.setattr("testbed.ports.candidate_range", lambda: range(taken, taken + 1))
        with pytest.raises(RuntimeError, match="only 0 of 1 free loopback ports"):
            free_ports(1)


def test_the_range_follows_the_kernel_setting(tmp_path: Path) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("1024\t40000\n")
    assert candidate_range(setting) == range(40001, 65536)
    setting.write_text("50000 60999")
    assert candidate_range(setting) == range(20000, 50000)
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)


def test_a_run_of_ports_is_consecutive_free_and_never_repeats() -> None:
    first, second = free_port_run(4), free_port_run(4)
    run = [*range(first, first + 4), *range(second, second + 4)]
    assert len(set(run)) == 8
    assert not set(run) & set(free_ports(40))
    for port in run:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_no_run_where_one_port_of_it_is_taken(monkeypatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        holder.listen()
        monkeypatch.setattr("testbed.ports.candidate_range", lambda: range(taken - 1, taken + 2))
        with pytest.raises(RuntimeError, match="no 2 consecutive free loopback ports"):
            free_port_run(2)
