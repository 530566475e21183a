#!/usr/bin/env bash
# make test's pytest, in two lanes run side by side: the tests marked `cluster` spend most of their ~7 minutes
# waiting on SLURM's clocks (time limits, requeues, accounting), so they run beside the rest instead of after it.
# Each lane is its own pytest (own session fixtures and temporary folders); the cluster lane's output is printed
# after the other's, and the exit status is the first failing lane's. With arguments (a file, -k, -x ...) it is one
# plain `pytest -m "not gpu" ARGS`, so `make test PYTEST_ARGS=...` selects as pytest does.
# Usage: scripts/pytest_lanes.sh PYTHON [PYTEST_ARGS...]
set -uo pipefail
py=${1:?usage: scripts/pytest_lanes.sh PYTHON [PYTEST_ARGS...]}
shift
if [ $# -gt 0 ]; then
    exec "$py" -m pytest -q -m "not gpu" "$@"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# no cache plugin in the side lane: two pytest processes would both write .pytest_cache
"$py" -m pytest -q -m cluster -p no:cacheprovider >"$log" 2>&1 &
cluster_pid=$!
"$py" -m pytest -q -m "not gpu and not cluster"
rest=$?
wait "$cluster_pid"
cluster=$?
echo
echo "---- tests marked cluster (run beside the others) ----"
cat "$log"
echo "lanes: not cluster exit $rest, cluster exit $cluster"
if [ "$rest" -ne 0 ]; then exit "$rest"; fi
exit "$cluster"
