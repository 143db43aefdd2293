#!/bin/sh
# Restart Debian's exporter until Nginx answers; stop cleanly on SIGTERM (docker stop).
trap 'kill "$child" 2>/dev/null; exit 0' TERM INT
while :; do
  /usr/bin/prometheus-nginx-exporter "$@" &
  child=$!
  wait "$child" && exit 0
  sleep 5
done
