"""Typed keys of what the router stores on an aiohttp request while handling it."""

from __future__ import annotations

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
