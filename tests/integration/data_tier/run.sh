#!/usr/bin/env bash
# Integration test of the postgres and pgbouncer roles against this machine's own Docker engine:
#   build the lab images, check mode on a fresh host, converge, pytest (which converges again for
#   idempotence, a pool change and bad input), then clean up (KEEP=1 keeps the stack).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../../../scripts/lib.sh
source "$HERE/../../../scripts/lib.sh"
link_collection
cd "$ROOT"

PLAY=(ansible-playbook -i 'localhost,' "$HERE/play.yml")
[ "${KEEP:-0}" = 1 ] || trap '"$HERE/cleanup.sh"' EXIT
t0=$SECONDS

tests/lab/build-images
"$HERE/cleanup.sh"

echo "[data_tier] check mode on a fresh host"
"${PLAY[@]}" --check >/tmp/dt-check.log 2>&1 || { tail -40 /tmp/dt-check.log; exit 1; }
grep -A1 'PLAY RECAP' /tmp/dt-check.log | tail -1

echo "[data_tier] converge"
"${PLAY[@]}" >/tmp/dt-converge.log 2>&1 || { tail -60 /tmp/dt-converge.log; exit 1; }
grep -A1 'PLAY RECAP' /tmp/dt-converge.log | tail -1

address() { docker inspect -f "{{ (index .NetworkSettings.Networks \"dt-mattermost\").IPAddress }}" "$1"; }
primary=$(ip -4 route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' || true)
export DT_POSTGRES_HOST DT_PGBOUNCER_HOST DT_HOST_ADDRESSES DT_CONVERGE
DT_POSTGRES_HOST=$(address dt-postgres)
DT_PGBOUNCER_HOST=$(address dt-pgbouncer)
DT_HOST_ADDRESSES="127.0.0.1 ${primary:-$(hostname -I | awk '{print $1}')}"
DT_CONVERGE="${PLAY[*]}"
echo "[data_tier] pytest (postgres $DT_POSTGRES_HOST, pgbouncer $DT_PGBOUNCER_HOST, host $DT_HOST_ADDRESSES)"
python -m pytest -p no:cacheprovider -q "$HERE/test_data_tier.py" "$@"
echo "[data_tier] passed in $((SECONDS - t0)) s"
