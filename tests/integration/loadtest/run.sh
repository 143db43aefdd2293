#!/usr/bin/env bash
# Integration test of the load tests (playbooks/loadtest.yml, loadtest/*.js) against this machine's
# own Docker engine: build the lab images, converge a stack of its own (lt-* containers, Nginx on
# 127.0.0.1:$LT_HTTP_PORT), then pytest: bad input stops before any load, every scenario passes a
# short run, crossed thresholds fail the playbook, a replica answering 500 and a stopped PgBouncer
# make their scenario exit non-zero. Cleans up at the end (KEEP=1 keeps the stack; REUSE=1 uses a
# stack that already answers instead of converging a fresh one).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../../../scripts/lib.sh
source "$HERE/../../../scripts/lib.sh"
link_collection
cd "$ROOT"

export LT_PREFIX=${LT_PREFIX:-lt} LT_HTTP_PORT=${LT_HTTP_PORT:-18090}
export LT_URL="http://127.0.0.1:$LT_HTTP_PORT"
[ "${KEEP:-0}" = 1 ] || trap '"$HERE/cleanup.sh"' EXIT
t0=$SECONDS

if [ "${REUSE:-0}" = 1 ] && curl -fsS --max-time 5 "$LT_URL/api/v4/system/ping" >/dev/null 2>&1; then
  echo "[loadtest] reusing the stack at $LT_URL"
else
  tests/lab/build-images
  "$HERE/cleanup.sh"
  echo "[loadtest] converge (${LT_PREFIX}-*, Nginx on $LT_URL)"
  ansible-playbook -i localhost, "$HERE/play.yml" >"/tmp/${LT_PREFIX}-converge.log" 2>&1 \
    || { tail -60 "/tmp/${LT_PREFIX}-converge.log"; exit 1; }
  grep -A1 'PLAY RECAP' "/tmp/${LT_PREFIX}-converge.log" | tail -1
  echo "[loadtest] converged in $((SECONDS - t0)) s"
fi

echo "[loadtest] pytest against $LT_URL"
python -m pytest -p no:cacheprovider -q -rs "$HERE/test_loadtest.py" "$@"
echo "[loadtest] passed in $((SECONDS - t0)) s"
