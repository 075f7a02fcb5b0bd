#!/usr/bin/env bash
# `make test`: tests/run_all.sh PYTHON [COMMAND...]
#
# Two parts, both always run; the exit status fails if either does (or COMMAND does).
# 1. The live tests (marker slow or ray: Ray clusters, vLLM, real trainer runs), one at a time: their time bounds
#    (a lost node detected, a failed run ended) assume the machine is theirs.
# 2. The rest (no Ray, no trainer), on both CPUs at once (pytest-xdist: each test is mostly one busy process).
#
# COMMAND, where given (make test BESIDE_LIVE="..."; CI passes the other verl releases' install and suites), runs
# beside part 1 in a session of its own at the lowest CPU priority: a live run keeps about 1.3 of the 2 CPUs busy
# (measured here: 220 CPU-seconds in a 167 s run; its start-up is mostly one process importing), and COMMAND gets
# what is left. Its output is printed when it ends. Part 2 waits for it: beside part 2's two busy workers it would
# get no CPU at all, and its tests' own time limits could run out.
set -uo pipefail
python=$1
shift
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

beside_pid="" beside_log="" beside_rc=0
stop_beside() {
  # its session, or the command itself where it has not yet made one
  if [[ -n $beside_pid ]]; then kill -- "-$beside_pid" 2>/dev/null || kill "$beside_pid" 2>/dev/null || true; fi
  rm -f "$beside_log"
}
trap stop_beside EXIT
if (($#)); then
  beside_log=$(mktemp)
  echo "== beside the live tests, at the lowest CPU priority: $*"
  setsid "$(dirname "$0")/own_session.sh" beside 19 "$@" >"$beside_log" 2>&1 &
  beside_pid=$!
fi

rc=0
start=$SECONDS
"$python" -m pytest tests -m "slow or ray" --durations=25 || rc=$?
echo "== the live tests took $((SECONDS - start)) s"

if [[ -n $beside_pid ]]; then
  start=$SECONDS
  wait "$beside_pid" || beside_rc=$?
  beside_pid=""
  echo "== beside the live tests: $* (waited $((SECONDS - start)) s for it after them; exit $beside_rc)"
  cat "$beside_log"
  echo "== end of: $* (exit $beside_rc)"
fi

start=$SECONDS
"$python" -m pytest tests -m "not slow and not ray" -n 2 --durations=15 || rc=$?
echo "== the tests that start no Ray and run no trainer took $((SECONDS - start)) s"
((rc == 0 && beside_rc == 0))
