#!/usr/bin/env bash
# make test's pytest, in two lanes run side by side: tests/cluster spends most of its ~7 minutes waiting on SLURM's
# clocks (time limits, requeues, accounting), so it runs beside the rest instead of after it, followed in the same
# lane by tests/unit (~2 minutes); the other lane runs everything else under tests/ (the smoke tests, the bulk).
# Each lane is its own pytest (own session fixtures and temporary folders); the side lane's output is printed after
# the other's, and the exit status is the first failing lane's. With arguments (a file, -k, -x ...) it is one plain
# `pytest -m "not gpu" ARGS`, so `make test PYTEST_ARGS=...` selects as pytest does.
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
side=(tests/cluster tests/unit)
"$py" -m pytest -q -m "not gpu" -p no:cacheprovider "${side[@]}" >"$log" 2>&1 &
side_pid=$!
"$py" -m pytest -q -m "not gpu" tests "${side[@]/#/--ignore=}"
main=$?
wait "$side_pid"
side_status=$?
echo
echo "---- ${side[*]} (run beside the others) ----"
cat "$log"
echo "lanes: the rest of tests/ exit $main, ${side[*]} exit $side_status"
if [ "$main" -ne 0 ]; then exit "$main"; fi
exit "$side_status"
