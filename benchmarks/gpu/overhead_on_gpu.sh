#!/usr/bin/env bash
# On the lent GPU machine (no network, no verl, no Ray): installs the wheels of .whl/ (made here by
# benchmarks/gpu/prepare_wheels.sh, carried with the working tree) into a folder of its own, puts the Ray stand-in
# benchmarks/without_ray on PYTHONPATH, and runs benchmarks/overhead.py on the GPU, its output tee'd to
# $OUT/overhead_cuda.txt (./overhead_cuda.txt without OUT). The machine's own torch, numpy and transformers are used.
#   device tool: command `bash benchmarks/gpu/overhead_on_gpu.sh`, carry [".whl"]; under 1-2 minutes.
# A check of this script on a machine without a GPU (not a measurement) overrides the defaults below, e.g.
#   PYTHON=venv/bin/python WHEELS=/tmp/cp311-wheels SITE=/tmp/check-site OUT=/tmp/check \
#     OVERHEAD_ARGS="--device cpu --quick --reps 1 --shapes 2x64" bash benchmarks/gpu/overhead_on_gpu.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

python="${PYTHON:-python3}"
site="${SITE:-/tmp/site}"
read -r -a args <<<"${OVERHEAD_ARGS:---device cuda --reps 51 --shapes 8x4096,16x8192,32x4096,32x16384,32x32768}"

wheels=("${WHEELS:-.whl}"/*.whl)
[[ -e "${wheels[0]}" ]] || { echo "${wheels[0]}: none; run benchmarks/gpu/prepare_wheels.sh" >&2; exit 1; }
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wheels[@]}"
export PYTHONPATH="$site:$PWD:$PWD/benchmarks/without_ray" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: none here"
"$python" -c 'from importlib.metadata import version as v
print(", ".join(f"{n} {v(n)}" for n in ("torch", "numpy", "transformers", "verl", "tensordict", "omegaconf")))'
mkdir -p "${OUT:-.}"
"$python" benchmarks/overhead.py "${args[@]}" 2>&1 | tee "${OUT:-.}/overhead_cuda.txt"
