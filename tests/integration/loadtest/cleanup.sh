#!/usr/bin/env bash
# Remove what play.yml created for LT_PREFIX (default lt; the benchmark uses lt-bench): its
# containers, the data volume, the network and the directory under /tmp (the load test's state
# included). Only these prefixed names are touched.
set -uo pipefail
P=${LT_PREFIX:-lt}
case "$P" in *[!a-z0-9-]*|'') echo "bad LT_PREFIX" >&2; exit 2 ;; esac
mapfile -t names < <(docker ps -aq --filter name="^${P}-(mattermost-[0-9]+|nginx|pgbouncer|postgres)\$" 2>/dev/null)
[ "${#names[@]}" -eq 0 ] || docker rm -f "${names[@]}" >/dev/null 2>&1 || true
docker volume rm "${P}-postgres-data" >/dev/null 2>&1 || true
docker network rm "${P}-mattermost" >/dev/null 2>&1 || true
rm -rf "/tmp/mmops-${P}"
echo "[loadtest] cleaned up ${P}-*"
