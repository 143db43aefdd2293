#!/usr/bin/env bash
# Remove what tests/integration/app_tier/play.yml created: its containers, the data volume, the
# network and the directory under /tmp. Only these test-specific names are touched.
set -uo pipefail
names=$(docker ps -aq --filter name='^app-(mattermost-[0-9]+|nginx|pgbouncer|postgres)$' 2>/dev/null)
[ -z "$names" ] || docker rm -f $names >/dev/null 2>&1 || true
docker volume rm app-postgres-data >/dev/null 2>&1 || true
docker network rm app-mattermost >/dev/null 2>&1 || true
rm -rf /tmp/mmops-app
echo "[app_tier] cleaned up"
