#!/usr/bin/env bash
# Integration test of the monitoring role on this machine's own Docker engine (about 5 minutes):
# lab images, promtool/amtool checks and rule unit tests, converge, a second converge of the
# monitoring play (idempotence), pytest checks (the last one re-converges with a changed rule),
# clean up. Keeps the stack for debugging with KEEP=1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
export MMOPS_ROOT="$ROOT"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg" ANSIBLE_NOCOLOR=1
LOGS=$(mktemp -d)
cleanup() { [ "${KEEP:-0}" = 1 ] || "$HERE/cleanup.sh"; }
trap cleanup EXIT

"$ROOT/tests/lab/build-images"
"$ROOT/tests/promtool/run"
"$HERE/cleanup.sh"
echo "[obs] converge"
"$ROOT/.venv/bin/ansible-playbook" "$HERE/play.yml" >"$LOGS/converge.log" 2>&1 \
  || { tail -60 "$LOGS/converge.log"; exit 1; }
echo "[obs] second converge of the monitoring play"
"$ROOT/.venv/bin/ansible-playbook" "$HERE/play.yml" --skip-tags data >"$LOGS/idempotence.log" 2>&1 \
  || { tail -60 "$LOGS/idempotence.log"; exit 1; }
grep -A2 "PLAY RECAP" "$LOGS/idempotence.log"
MMOPS_OBS_IDEMPOTENCE_LOG="$LOGS/idempotence.log" MMOPS_OBS_PLAYBOOK="$HERE/play.yml" \
  "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$HERE/test_observability.py"
