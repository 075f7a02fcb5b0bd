#!/usr/bin/env bash
# Makes .whl/ in the repository root: the wheels that benchmarks/gpu/overhead_on_gpu.sh installs on the lent GPU
# machine (x86-64, python3 = CPython 3.12, no network) to run `benchmarks/overhead.py --device cuda` there. Run it
# here, where the package index is reachable; then carry `.whl` to the GPU machine (docs/benchmarks.md, section 3).
#
# Why each wheel: the benchmark imports verl, and `import verl` imports
#   verl 0.9.1                        the pin of recipes/REQUIRED_VERL.txt (pure python)
#   omegaconf 2.3.1                   verl's config -> antlr4-python3-runtime 4.9.3 (omegaconf pins 4.9.*; PyPI has
#                                     only its sdist, so it is built here into a pure-python wheel)
#   tensordict 0.10.0 (cp312 binary)  imported by verl itself and verl.protocol -> pyvers 0.1.0
#   codetiming 1.4.0                  verl.utils.profiler's timers
#   orjson 3.13.0 (cp312 binary)      imported through verl.utils.tracking
# Ray, which verl.protocol imports too, is not carried (~70 MB): benchmarks/without_ray stands in for it. torch, numpy
# and transformers (and what they need) are the GPU machine's own and are never downloaded or carried.
#
# .whl/ is git-ignored through .git/info/exclude: never committed, still carried. Idempotent: wheels already in .whl/
# are kept; a file in .whl/ that is not one of these stops it (delete .whl/ and run it again).
# Usage: bash benchmarks/gpu/prepare_wheels.sh   (PYTHON=... to use another interpreter's pip)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$root/.whl"
python="${PYTHON:-python3}"
limit_mib=20

pinned_verl="$(sed -n 's/^version: *//p' "$root/recipes/REQUIRED_VERL.txt")"
if [[ "$pinned_verl" != "0.9.1" ]]; then
    echo "recipes/REQUIRED_VERL.txt pins verl $pinned_verl; this script fetches verl 0.9.1 and its imports:" \
        "update the pins here (and check the import chain) first" >&2
    exit 1
fi

expected=(
    antlr4_python3_runtime-4.9.3-py3-none-any.whl
    codetiming-1.4.0-py3-none-any.whl
    omegaconf-2.3.1-py3-none-any.whl
    orjson-3.13.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
    pyvers-0.1.0-py3-none-any.whl
    tensordict-0.10.0-cp312-cp312-manylinux_2_28_x86_64.whl
    verl-0.9.1-py3-none-any.whl
)

mkdir -p "$dir"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1 && ! git -C "$root" check-ignore -q .whl; then
    echo "/.whl/" >>"$(cd "$root" && git rev-parse --path-format=absolute --git-path info/exclude)"
fi
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dir" \
    verl==0.9.1 omegaconf==2.3.1 tensordict==0.10.0 pyvers==0.1.0 codetiming==1.4.0 orjson==3.13.0
if [[ ! -e "$dir/${expected[0]}" ]]; then
    "$python" -m pip wheel -q --no-deps -w "$dir" antlr4-python3-runtime==4.9.3
fi

found="$(cd "$dir" && LC_ALL=C ls -A)"
if [[ "$found" != "$(printf '%s\n' "${expected[@]}")" ]]; then
    echo "$dir holds other files than the pinned wheels:" >&2
    diff <(printf '%s\n' "${expected[@]}") <(echo "$found") >&2 || true
    exit 1
fi

total="$(du -cb "$dir"/*.whl | tail -n 1 | cut -f 1)"
printf '%s\n' "${expected[@]}"
echo "total: $((total / 1024)) KiB in $dir"
if ((total > limit_mib * 1024 * 1024)); then
    echo "more than $limit_mib MiB: carried to the GPU machine with the working tree (64 MiB in all)" >&2
    exit 1
fi
