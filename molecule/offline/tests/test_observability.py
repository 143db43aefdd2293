"""Observability in the instance: every scrape target is up (the real exporters measure the
real PostgreSQL, PgBouncer and Nginx), the probes see every replica through its ping, and the
alert rules load on the real Prometheus."""
import json
import time

testinfra_hosts = ["ansible://all"]


def _prometheus(host, path):
    return json.loads(host.check_output(f"docker exec prometheus wget -qO- 'http://localhost:9090{path}'"))["data"]


def test_every_target_is_up(host):
    targets = _prometheus(host, "/api/v1/targets?state=active")["activeTargets"]
    down = [(t["labels"]["job"], t["labels"]["instance"], t["lastError"]) for t in targets if t["health"] != "up"]
    assert targets and not down, down


def test_every_replica_and_nginx_are_probed(host, plan):
    targets = _prometheus(host, "/api/v1/targets?state=active")["activeTargets"]
    probed = {t["labels"]["instance"] for t in targets if t["labels"]["job"].startswith("ping_")}
    for n in range(1, plan["mattermost"]["replicas"] + 1):
        assert f"http://mattermost-{n}:8065/api/v4/system/ping" in probed
    assert any("nginx" in p for p in probed)


def test_real_exporters_see_their_services(host):
    for query in ("pg_up", "pgbouncer_up", "nginx_up"):
        result = _prometheus(host, f"/api/v1/query?query={query}")["result"]
        assert result and all(r["value"][1] == "1" for r in result), query


def test_alert_rules_are_loaded_and_healthy(host):
    groups = _prometheus(host, "/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 10
    assert all(r["health"] != "err" for r in rules), [r["name"] for r in rules if r["health"] == "err"]


def test_logs_reach_loki(host):
    """Alloy ships the containers' and Nginx's log lines: Loki has taken pushes and Alloy is up
    (an Alloy that cannot write its data directory exits before its first push)."""
    deadline = time.monotonic() + 90
    while True:
        host.run("curl -s -o /dev/null http://127.0.0.1/api/v4/system/ping")
        pushes = _prometheus(host, "/api/v1/query?query=loki_distributor_push_requests_total")["result"]
        alloy = _prometheus(host, '/api/v1/query?query=up{job="alloy"}')["result"]
        if pushes and float(pushes[0]["value"][1]) > 0 and alloy and alloy[0]["value"][1] == "1":
            return
        assert time.monotonic() < deadline, f"no log push reached Loki in 90 s: pushes={pushes} alloy up={alloy}"
        time.sleep(5)
