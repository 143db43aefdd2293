#!/usr/bin/env bash
# Remove what tests/integration/data_tier/play.yml created: its two containers, the data volume,
# the network and the configuration/secrets directory. Only these test-specific names are touched.
set -uo pipefail
docker rm -f dt-pgbouncer dt-postgres >/dev/null 2>&1 || true
docker volume rm dt-postgres-data >/dev/null 2>&1 || true
docker network rm dt-mattermost >/dev/null 2>&1 || true
rm -rf /tmp/mmops-test
echo "[data_tier] cleaned up"
