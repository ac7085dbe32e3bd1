"""The two roles of disaggregated serving: the one definition of their names, shared by the worker launcher, the
router and infra. (A role's settings, replicas and GPU layout, are :class:`runtime.config.RoleSettings`.)"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["prefill", "decode"]
"""What an engine does in P/D serving."""
ROLES: tuple[Role, ...] = get_args(Role)
PREFILL: Role = "prefill"
DECODE: Role = "decode"
