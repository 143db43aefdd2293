#!/usr/bin/env bash
# Remove what tests/integration/operations created: its containers, the data volume, the network,
# a tmpfs the out-of-space test may have left mounted, and /tmp/mmops-ops. Only these test-specific
# names are touched.
set -uo pipefail
names=$(docker ps -aq --filter name='^ops-(mattermost-[0-9]+|nginx|pgbouncer|postgres)$' 2>/dev/null)
[ -z "$names" ] || echo "$names" | xargs docker rm -f >/dev/null 2>&1 || true
docker volume rm ops-postgres-data >/dev/null 2>&1 || true
docker network rm ops-mattermost >/dev/null 2>&1 || true
if mountpoint -q /tmp/mmops-ops/small 2>/dev/null; then umount /tmp/mmops-ops/small || true; fi
rm -rf /tmp/mmops-ops
echo "[operations] cleaned up"
