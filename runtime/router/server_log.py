"""aiohttp's server log as the router's JSON lines. aiohttp logs every request it cannot parse (a bad header, a
NUL in the path, a bad chunk size) at ERROR with a traceback, on its own ``aiohttp.server`` logger, which no JSON
handler formats: plain-text tracebacks in the JSON log, one per stray client. The router hands aiohttp a logger
under ``runtime`` whose filter turns those into one ``malformed_request`` warning line; any other aiohttp error
keeps its traceback, as the line's ``exception`` field."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

from runtime.json_log import FIELDS

NAME = "runtime.router.http"


class MalformedRequests(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            client = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.msg, record.args = "malformed_request", ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
            setattr(
                record, FIELDS, {"client": client, "status": error.code, "reason": str(error.message)[:200].strip()}
            )
        return True


def server_logger() -> logging.Logger:
    logger = logging.getLogger(NAME)
    if not any(isinstance(existing, MalformedRequests) for existing in logger.filters):
        logger.addFilter(MalformedRequests())
    return logger
