#!/usr/bin/env bash
# Integration test of the mattermost and nginx roles (with the data tier under them) against this
# machine's own Docker engine: build the lab images, converge, pytest (load through Nginx on
# loopback, a stopped replica, the rolling restart, the replicas' settings, idempotence, check mode,
# bad input), then clean up (KEEP=1 keeps the stack). APP_HTTP_PORT moves Nginx off 18080.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../../scripts/lib.sh
source "$HERE/../../../scripts/lib.sh"
link_collection
cd "$ROOT"

export APP_HTTP_PORT=${APP_HTTP_PORT:-18080}
PLAY=(ansible-playbook -i 'localhost,' "$HERE/play.yml")
# restart.yml with the registry unreachable and no image archives: a restart needs neither.
RESTART=(ansible-playbook -i 'localhost,' "$ROOT/playbooks/restart.yml" -e "@$ROOT/tests/lab/images.yml" -e "@$HERE/vars.yml"
  -e stack_image_archive_dir= -e stack_registry_check_url=http://127.0.0.1:9/v2/)
[ "${KEEP:-0}" = 1 ] || trap '"$HERE/cleanup.sh"' EXIT
t0=$SECONDS

tests/lab/build-images
"$HERE/cleanup.sh"

echo "[app_tier] converge"
"${PLAY[@]}" >/tmp/app-converge.log 2>&1 || { tail -60 /tmp/app-converge.log; exit 1; }
grep -A1 'PLAY RECAP' /tmp/app-converge.log | tail -1

export APP_URL="http://127.0.0.1:$APP_HTTP_PORT" APP_CONVERGE="${PLAY[*]}" APP_RESTART="${RESTART[*]}"
export APP_K6="$VENV/bin/k6"
echo "[app_tier] pytest against $APP_URL"
python -m pytest -p no:cacheprovider -q -rs "$HERE/test_app_tier.py" "$@"
echo "[app_tier] passed in $((SECONDS - t0)) s"
