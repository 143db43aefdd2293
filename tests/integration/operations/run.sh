#!/usr/bin/env bash
# Integration test of the backup and archive roles and the backup/restore playbooks against this
# machine's own Docker engine: build the lab images, check mode on a fresh host, converge the stack
# (postgres, pgbouncer, the Mattermost test double, nginx, backup, archive; names prefixed ops-),
# pytest (Mattermost's API through two upstream clients and the websocket, tests/integration/clients;
# idempotence, round trip through a restore, out of space, retention, lock, archiving with the
# insert latency measured, bad input), then clean up (KEEP=1 keeps the stack). OPS_HTTP_PORT moves
# Nginx off 18473; the measured numbers are printed at the end and kept in OPS_REPORT.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../../../scripts/lib.sh
source "$HERE/../../../scripts/lib.sh"
link_collection
cd "$ROOT"

export OPS_HTTP_PORT=${OPS_HTTP_PORT:-18473}
export OPS_REPORT=${OPS_REPORT:-/tmp/ops-report.txt}
PLAY=(ansible-playbook -i 'localhost,' "$HERE/play.yml")
[ "${KEEP:-0}" = 1 ] || trap '"$HERE/cleanup.sh"' EXIT
t0=$SECONDS

tests/lab/build-images
"$HERE/cleanup.sh"
rm -f "$OPS_REPORT"

echo "[operations] check mode on a fresh host"
"${PLAY[@]}" --check >/tmp/ops-check.log 2>&1 || { tail -40 /tmp/ops-check.log; exit 1; }
grep -A1 'PLAY RECAP' /tmp/ops-check.log | tail -1

echo "[operations] converge"
"${PLAY[@]}" >/tmp/ops-converge.log 2>&1 || { tail -60 /tmp/ops-converge.log; exit 1; }
grep -A1 'PLAY RECAP' /tmp/ops-converge.log | tail -1

export OPS_URL="http://127.0.0.1:$OPS_HTTP_PORT" OPS_CONVERGE="${PLAY[*]}"
# The day-2 playbooks (backup, restore) with the registry unreachable and no image archives: they use
# the images already on the host, so neither may be needed.
export OPS_PLAYBOOK="ansible-playbook -i localhost, -e @$ROOT/tests/lab/images.yml -e @$HERE/vars.yml \
  -e stack_image_archive_dir= -e stack_registry_check_url=http://127.0.0.1:9/v2/"
export OPS_ARCHIVE_PLAY="ansible-playbook -i localhost, $HERE/archive.yml"
[ -d tests/conformance/node_modules/@mattermost/client ] \
  || (cd tests/conformance && npm ci --no-audit --no-fund --loglevel=error)
echo "[operations] pytest against $OPS_URL (first the API clients, then the operations)"
MMOPS_CLIENTS_URL="$OPS_URL" python -m pytest -p no:cacheprovider -q -rs "$HERE/../clients/test_clients.py" \
  "$HERE/test_operations.py" "$@"
echo "[operations] measured:"
cat "$OPS_REPORT"
echo "[operations] passed in $((SECONDS - t0)) s"
