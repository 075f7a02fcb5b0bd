#!/usr/bin/env bash
# setsid tests/own_session.sh NAME NICENESS COMMAND...: COMMAND at NICENESS in the session setsid made for it, with
# the session's autogroup nice set too: that is what Linux's scheduler weighs between sessions (a plain nice counts
# only within one). Its output says whether the autogroup nice took and how long COMMAND ran, for a look at timings.
# Used for work run beside other work: .ci/run's background jobs, tests/run_all.sh's BESIDE_LIVE command.
name=$1 niceness=$2
shift 2
echo "$niceness" > /proc/self/autogroup 2>/dev/null || true
echo "[$name] autogroup: $(cat /proc/self/autogroup 2>/dev/null || echo none)"
rc=0
nice -n "$niceness" "$@" || rc=$?
echo "[$name] took $SECONDS s, exit $rc"
exit "$rc"
