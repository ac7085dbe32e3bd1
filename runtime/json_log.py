"""Structured logs: one JSON object a line on stderr, with a UTC timestamp, the level, the event and its fields."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FIELDS = "pdstack_fields"
"""The LogRecord attribute that carries an event's fields."""
_ENCODER = json.JSONEncoder(default=str)
"""One encoder for every line: ``json.dumps(..., default=str)`` builds a new one per call (the router logs every
request)."""


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, FIELDS, {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)


class EventLog:
    """A logger whose calls take an event name and keyword fields: ``log.info("model_fetched", files=3)``.
    ``exc_info=True`` (in an ``except`` block) adds the traceback as the line's ``exception`` field."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def info(self, event: str, **fields: Any) -> None:
        self._logger.info(event, extra={FIELDS: fields})

    def warning(self, event: str, exc_info: bool = False, **fields: Any) -> None:
        self._logger.warning(event, exc_info=exc_info, extra={FIELDS: fields})

    def error(self, event: str, exc_info: bool = False, **fields: Any) -> None:
        self._logger.error(event, exc_info=exc_info, extra={FIELDS: fields})


def configure(level: int = logging.INFO) -> None:
    """Send the ``runtime`` loggers to stderr as JSON lines (once per process)."""
    root = logging.getLogger("runtime")
    if any(isinstance(handler.formatter, JsonLineFormatter) for handler in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
