#!/usr/bin/env bash
# Repeats the short-form load test with an instance kill (tests/test_production_cluster.py)
# RUNS times, cycling through the moments at which rasa-2 is killed, while a Rasa
# training runs beside it as CPU-heavy load (LOAD=0 leaves the machine alone).
#
#   RUNS=10 bash tools/repeat_short_loadtest.sh      # needs a trained model (make train)
#
# One line per run: run, kill moment, seed, result, the load test's last line.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
LOAD=${LOAD:-1}
MODES=(send_lost send_accepted during_turn before_rasa count)
OUT=${OUT:-var/repeat-loadtest}
mkdir -p "$OUT"
load_pid=""
if [ "$LOAD" = 1 ]; then
  # a training in a loop, into a throw-away directory, as the CPU-heavy neighbour
  # (its own process group, so that the whole loop and its training end with this script)
  setsid bash -c 'while true; do
      .venv/bin/rasa train --force --config models/config.effective.yml --data data --domain domain \
        --out "$0/train-load" --quiet >"$0/train-load.log" 2>&1
    done' "$OUT" &
  load_pid=$!
  trap 'kill -TERM -- -$load_pid 2>/dev/null' EXIT
  sleep 20
fi
passed=0
for i in $(seq 1 "$RUNS"); do
  mode=${MODES[$(( (i - 1) % ${#MODES[@]} ))]}
  seed=$(( 10 + i ))
  log="$OUT/run-$i.log"
  APPCARE_LOADTEST_KILL_MODE=$mode APPCARE_LOADTEST_SEED=$seed .venv/bin/pytest -q -s -p no:cacheprovider \
    "tests/test_production_cluster.py::test_load_short_form_with_drain_instance_kill_and_action_server_restart" >"$log" 2>&1
  rc=$?
  [ $rc = 0 ] && passed=$((passed + 1))
  last=$(grep -E '^lost=' "$log" | tail -1)
  echo "run $i kill=$mode seed=$seed $([ $rc = 0 ] && echo PASS || echo FAIL) ${last:-no result line} load=$(cut -d' ' -f1 /proc/loadavg)"
done
echo "passed $passed/$RUNS"
[ "$passed" = "$RUNS" ]
