#!/usr/bin/env bash
# Remove everything tests/integration/observability/play.yml created on this machine's engine.
set -uo pipefail
docker rm -f prometheus alertmanager grafana loki alloy cadvisor node-exporter postgres-exporter \
  pgbouncer-exporter nginx-exporter blackbox-exporter mattermost-1 mattermost-2 mattermost-3 \
  obs-nginx obs-pgbouncer obs-postgres >/dev/null 2>&1
docker volume rm prometheus-data alertmanager-data grafana-data loki-data alloy-data obs-postgres-data \
  >/dev/null 2>&1
docker network rm obs-mattermost >/dev/null 2>&1
rm -rf /tmp/mmops-obs
exit 0
