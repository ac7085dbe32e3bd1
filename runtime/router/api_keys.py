"""API-key authentication of the OpenAI endpoint: ``serving.router.api_keys_path`` names a file or a directory
(a mounted Kubernetes Secret: one file per key, or one file of keys); every non-empty line of every file is a key.
The keys are re-read when the files change (a rotated Secret is swapped in by the kubelet without a restart): the
router looks every ``RECHECK_S`` from a background task (``refresh``), never inside a request; a read that fails
keeps the last keys read. A client sends its key as the
OpenAI SDKs do, ``Authorization: Bearer <key>``; each comparison is constant-time and every key is compared, so the
answer's timing tells nothing of the keys."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from runtime.json_log import EventLog

log = EventLog("runtime.router.auth")
RECHECK_S = 1.0
BEARER = "bearer "


class ApiKeys:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._keys: tuple[bytes, ...] = ()
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._refresh()

    def allows(self, authorization: str | None) -> bool:
        """Whether the ``Authorization`` header carries one of the keys."""
        if not authorization or authorization[: len(BEARER)].lower() != BEARER:
            return False
        given = authorization[len(BEARER) :].strip().encode()
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(given, key)
        return found

    def _files(self) -> list[Path]:
        if self.path.is_dir():  # a Secret volume: its keys are symlinks into ..data; skip the ..-named entries
            return sorted(entry for entry in self.path.iterdir() if not entry.name.startswith(".") and entry.is_file())
        return [self.path]

    async def refresh(self) -> None:
        """One look at the files (the router runs it every ``RECHECK_S``)."""
        self._refresh()

    def _refresh(self) -> None:
        try:
            files = self._files()
            signature = tuple((str(file), (stat := os.stat(file)).st_mtime_ns, stat.st_size) for file in files)
            if signature == self._signature:
                return
            keys = {line.strip() for file in files for line in file.read_text().splitlines() if line.strip()}
        except OSError as error:
            log.error("api_keys_unreadable", path=str(self.path), reason=str(error)[:200], keeping=len(self._keys))
            return
        self._signature = signature
        self._keys = tuple(sorted(key.encode() for key in keys))
        log.info("api_keys_loaded", path=str(self.path), files=len(files), keys=len(self._keys))
        if not self._keys:
            log.error("api_keys_empty", path=str(self.path), effect="every API request is answered 401")
