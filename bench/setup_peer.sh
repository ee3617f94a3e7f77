#!/usr/bin/env bash
# Installs the PyTorch peer that bench/run compares Retort with: a virtual environment OUTSIDE the
# source tree (default $HOME/.cache/retort-bench/venv, or $RETORT_BENCH_VENV) holding the pinned
# torch from bench/requirements.txt. PyPI's Linux torch wheel depends on the nvidia-* CUDA wheels
# (several GB); they are installed too, since PyPI has no CPU-only Linux build, but the peer runs
# on the CPU only. Set PYTHON to choose the interpreter (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${RETORT_BENCH_VENV:-$HOME/.cache/retort-bench/venv}"
py="${PYTHON:-python3}"

case "$venv/" in
"$(cd "$here/.." && pwd)/"*) echo "setup_peer: $venv is inside the source tree; choose another RETORT_BENCH_VENV" >&2; exit 1 ;;
esac

if [ ! -x "$venv/bin/python" ]; then
    echo "setup_peer: creating $venv with $($py --version 2>&1)"
    mkdir -p "$(dirname "$venv")"
    "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --upgrade --quiet pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"

# The peer must import and compute on a machine without a GPU.
CUDA_VISIBLE_DEVICES="" "$venv/bin/python" - <<'PY'
import torch
x = torch.randn(8, 3, 32, 32, requires_grad=True)
torch.nn.functional.conv2d(x, torch.randn(16, 3, 3, 3), padding=1).sum().backward()
print(f"setup_peer: torch {torch.__version__} works on the CPU ({torch.get_num_threads()} threads, "
      f"cuda available: {torch.cuda.is_available()})")
PY
echo "setup_peer: done; bench/run will use $venv/bin/python"
