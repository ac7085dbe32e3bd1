"""Typed keys of what the router stores on an aiohttp request while handling it."""

from __future__ import annotations

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
OUTCOME = web.RequestKey("outcome", str)
"""Set when a response that already started ends badly (the status said 200)."""
