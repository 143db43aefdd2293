"""Checks of the observability stack converged by play.yml (see run.sh).

Addresses come from environment variables, so the same functions run in a Molecule verifier:
  MMOPS_OBS_EXPECTED       expected.json written by the play (default /tmp/mmops-obs/expected.json)
  MMOPS_PROMETHEUS         Prometheus container, queried with `docker exec ... wget` (default prometheus)
  MMOPS_ALERTMANAGER       Alertmanager container (default alertmanager)
  MMOPS_GRAFANA            Grafana container, reached at its address on the stack network (default grafana)
  MMOPS_OBS_PLAYBOOK       playbook to re-converge with a changed rule (required: the test fails without it)
  MMOPS_OBS_IDEMPOTENCE_LOG  output of the second converge, checked for changed=0 (required)
"""
import json
import os
import re
import subprocess
import time
import urllib.parse
from pathlib import Path

import harness
import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = ROOT / "roles/monitoring/files/dashboards"
RUN_SH = "tests/integration/observability/run.sh"
EXPECTED = harness.require_deployment(os.environ.get("MMOPS_OBS_EXPECTED", "/tmp/mmops-obs/expected.json"), RUN_SH)
PROMETHEUS = os.environ.get("MMOPS_PROMETHEUS", "prometheus")
ALERTMANAGER = os.environ.get("MMOPS_ALERTMANAGER", "alertmanager")
GRAFANA = os.environ.get("MMOPS_GRAFANA", "grafana")
# The stable dashboards: uid -> title (links and bookmarks depend on them).
STABLE_DASHBOARDS = {
    "mmops-containers": "Mattermost stack / Containers",
    "mmops-database": "Mattermost stack / PostgreSQL and PgBouncer",
    "mmops-logs": "Mattermost stack / Logs",
    "mmops-http": "Mattermost stack / HTTP (Nginx)",
    "mmops-backups": "Mattermost stack / Backups",
}
DATASOURCE_UIDS = {"prometheus", "loki", "mattermost-postgres"}
# Jobs whose targets are real programs (Debian's Prometheus, Alertmanager and exporters, the lab's
# PgBouncer exporter reading the real PgBouncer, blackbox probes of the replicas through Nginx).
REAL_JOBS = {"prometheus", "alertmanager", "node_exporter", "postgres_exporter", "pgbouncer_exporter",
             "nginx_exporter", "blackbox_exporter", "ping_nginx", "ping_mattermost"}


def expected():
    return json.loads(EXPECTED.read_text())


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


def prom(path, **params):
    """GET the Prometheus API from inside its container (nothing is published)."""
    url = f"http://127.0.0.1:9090{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    out = docker("exec", PROMETHEUS, "wget", "-q", "-O", "-", url, check=False)
    assert out.returncode == 0 or out.stdout, f"{url}: {out.stderr}"
    return json.loads(out.stdout)


def wait_for(predicate, timeout=120, step=3):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(step)


def prometheus_exprs():
    """Every PromQL expression of the dashboards (Prometheus targets) and of the deployed rules."""
    exprs = []
    for board in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel.get("targets", []):
                if target.get("datasource", panel.get("datasource", {})).get("uid") == "prometheus":
                    exprs.append((f"{board.stem}: {panel['title']}", target["expr"]))
    rules_dir = Path(expected()["config_dir"]) / "prometheus/rules"
    for rule_file in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(rule_file.read_text())["groups"]:
            for rule in group["rules"]:
                exprs.append((f"rule {rule.get('alert', rule.get('record'))}", rule["expr"]))
    return exprs


# ---- files -------------------------------------------------------------------------------------

def test_dashboards_are_valid_json_with_stable_uids_and_titles():
    found = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        assert board["uid"] == path.stem, f"{path.name}: uid {board['uid']} differs from the file name"
        found[board["uid"]] = board["title"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in DATASOURCE_UIDS, f"{path.name}: {panel['title']}"
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target.get("expr") or target.get("rawSql"), f"{path.name}: {panel['title']}"
    assert found == STABLE_DASHBOARDS


def test_grafana_provisioning_files_are_valid():
    exp = expected()
    prov = Path(exp["config_dir"]) / "grafana/provisioning"
    sources = yaml.safe_load((prov / "datasources/mattermost-ops.yml").read_text())
    assert sources["apiVersion"] == 1
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    assert set(by_uid) == DATASOURCE_UIDS
    assert [d["uid"] for d in sources["datasources"] if d.get("isDefault")] == ["prometheus"]
    for source in sources["datasources"]:
        assert {"name", "type", "uid", "url", "access"} <= set(source), source["name"]
    postgres = by_uid["mattermost-postgres"]
    assert postgres["type"] == "grafana-postgresql-datasource"
    assert postgres["url"].split(":")[0] == exp["pgbouncer_host"], "Grafana must go through PgBouncer"
    assert postgres["user"] == "grafana" and postgres["secureJsonData"]["password"]
    assert postgres["jsonData"]["maxOpenConns"] <= 2
    providers = yaml.safe_load((prov / "dashboards/mattermost-ops.yml").read_text())
    assert providers["apiVersion"] == 1
    assert [p["options"]["path"] for p in providers["providers"]] == ["/etc/grafana/dashboards"]
    assert sorted(p.name for p in (Path(exp["config_dir"]) / "grafana/dashboards").glob("*.json")) == \
        sorted(f"{uid}.json" for uid in STABLE_DASHBOARDS)


def test_loki_config_uses_tsdb_v13_filesystem_and_compactor_retention():
    exp = expected()
    loki = yaml.safe_load((Path(exp["config_dir"]) / "loki/loki.yml").read_text())
    (schema,) = loki["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    assert schema["index"]["period"] == "24h"
    assert loki["common"]["storage"]["filesystem"]["chunks_directory"].startswith("/loki/")
    assert loki["compactor"]["retention_enabled"] is True
    assert loki["compactor"]["delete_request_store"] == "filesystem"
    assert "shared_store" not in loki["compactor"], "removed in Loki 3.0"
    assert loki["limits_config"]["retention_period"] == exp["loki_retention_period"]


def test_alloy_config_ships_each_line_once():
    exp = expected()
    text = (Path(exp["config_dir"]) / "alloy/config.alloy").read_text()
    for component in ('discovery.docker "stack"', 'loki.source.docker "containers"', 'loki.process "containers"',
                      'loki.source.file "nginx"', 'loki.process "nginx"', 'loki.write "loki"'):
        assert component in text
    assert re.search(r'source_labels = \["__meta_docker_container_name"\]\s+regex\s+= "/\(\.\*\)"\s+'
                     r'target_label\s+= "container"', text)
    assert f'values = ["{exp["network"]}"]' in text
    # Mattermost's lines come from Docker (job="mattermost" by the service label), not also from its files.
    assert "/var/log/mattermost" not in text and 'regex         = "mattermost"' in text
    assert text.count("{") == text.count("}")


def test_alloy_runs_as_the_image_user_without_capabilities_and_reads_docker():
    """The official image's data directory is 473:473 0770: as root without capabilities Alloy could
    not create its component directories (the double exits then, as Alloy does)."""
    (alloy,) = json.loads(docker("inspect", "alloy").stdout)
    assert alloy["Config"]["User"] == "473:473" and alloy["HostConfig"]["CapDrop"] == ["ALL"]
    assert not alloy["HostConfig"].get("CapAdd") and alloy["State"]["Running"]
    sock_gid = str(Path("/var/run/docker.sock").stat().st_gid)
    assert alloy["HostConfig"]["GroupAdd"] == [sock_gid]
    metrics = docker("exec", PROMETHEUS, "wget", "-q", "-O", "-", "http://alloy:12345/metrics").stdout
    assert "alloy_double_docker_api_up 1" in metrics, metrics


def test_nginx_serves_grafana_under_its_location():
    """Nginx started (first play) before the monitoring role wrote /grafana/: Grafana answers through
    Nginx only because the monitoring role had the nginx role reload it."""
    text = (Path(expected()["nginx_locations_dir"]) / "grafana.conf").read_text()
    assert "location /grafana/ {" in text and "proxy_pass $mmops_grafana;" in text
    reply = requests.get(f"{expected()['site_url']}/grafana/api/health", timeout=10)
    assert reply.status_code == 200 and reply.json()["database"] == "ok", reply.text[:300]


def test_secret_files_are_private():
    exp = expected()
    for path in [Path(exp["config_dir"]) / "alertmanager/alertmanager.yml",
                 Path(exp["config_dir"]) / "pgbouncer-exporter/pgpass",
                 Path(exp["config_dir"]) / "postgres-exporter/password",
                 Path(exp["config_dir"]) / "grafana/secrets/admin_password",
                 Path(exp["config_dir"]) / "grafana/provisioning/datasources/mattermost-ops.yml"]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"


# ---- the running stack -------------------------------------------------------------------------

def test_deployed_configs_pass_promtool_and_amtool():
    expected()
    for args in (["promtool", "check", "config", "/etc/prometheus/prometheus.yml"],
                 ["promtool", "check", "rules", "/etc/prometheus/rules/mattermost-ops.yml"]):
        out = docker("exec", PROMETHEUS, *args, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
    out = docker("exec", ALERTMANAGER, "amtool", "check-config", "/etc/alertmanager/alertmanager.yml", check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_container_runs_with_the_plans_limits_and_publishes_nothing():
    exp = expected()
    names = {"node_exporter": "node-exporter", "postgres_exporter": "postgres-exporter",
             "pgbouncer_exporter": "pgbouncer-exporter", "nginx_exporter": "nginx-exporter",
             "blackbox_exporter": "blackbox-exporter"}
    for service in exp["services"]:
        info = json.loads(docker("inspect", names.get(service, service)).stdout)[0]
        host = info["HostConfig"]
        assert info["State"]["Running"], service
        assert host["Memory"] == exp["limits"][service]["memory_mb"] * 2**20, service
        assert host["NanoCpus"] == int(exp["limits"][service]["cpus"] * 1e9), service
        assert "no-new-privileges" in host["SecurityOpt"], service
        assert not host["PortBindings"], f"{service} publishes {host['PortBindings']}"
        assert exp["network"] in info["NetworkSettings"]["Networks"], service


def test_targets_of_real_components_are_up():
    def unhealthy():
        targets = prom("/api/v1/targets", state="active")["data"]["activeTargets"]
        jobs = {t["labels"]["job"] for t in targets}
        assert REAL_JOBS <= jobs, f"missing jobs: {REAL_JOBS - jobs}"
        return [(t["labels"]["job"], t["labels"]["instance"], t["health"], t["lastError"])
                for t in targets if t["labels"]["job"] in REAL_JOBS and t["health"] != "up"]

    wait_for(lambda: not unhealthy(), timeout=120)
    assert not unhealthy(), unhealthy()


def test_exporters_reach_the_real_services():
    query = "pg_up or pgbouncer_up or nginx_up or probe_success"

    def values():
        return {(r["metric"]["__name__"], r["metric"]["instance"]): r["value"][1]
                for r in prom("/api/v1/query", query=query)["data"]["result"]}

    wait_for(lambda: values() and all(v == "1" for v in values().values()), timeout=90)
    got = values()
    names = {name for name, _ in got}
    assert names == {"pg_up", "pgbouncer_up", "nginx_up", "probe_success"}, got
    assert len([k for k in got if k[0] == "probe_success"]) == expected()["replicas"] + 1, got
    assert all(v == "1" for v in got.values()), got


def test_every_dashboard_and_rule_expression_evaluates():
    exprs = prometheus_exprs()
    assert len(exprs) > 30
    failures = []
    for where, expr in exprs:
        answer = prom("/api/v1/query", query=expr)
        if answer.get("status") != "success":
            failures.append((where, expr, answer.get("error")))
    assert not failures, failures


def test_every_rule_is_loaded_and_healthy():
    rules_file = Path(expected()["config_dir"]) / "prometheus/rules/mattermost-ops.yml"
    want = {r.get("alert") for g in yaml.safe_load(rules_file.read_text())["groups"] for r in g["rules"]}

    def loaded():
        groups = prom("/api/v1/rules")["data"]["groups"]
        return {r["name"]: r["health"] for g in groups for r in g["rules"]}

    wait_for(lambda: want <= set(loaded()) and "unknown" not in loaded().values(), timeout=60)
    got = loaded()
    assert want <= set(got)
    assert all(health == "ok" for name, health in got.items() if name in want), got


def test_grafana_serves_the_provisioned_dashboards_and_datasources_under_the_sub_path():
    exp = expected()
    info = json.loads(docker("inspect", GRAFANA).stdout)[0]
    address = info["NetworkSettings"]["Networks"][exp["network"]]["IPAddress"]
    password = (Path(exp["secrets_dir"]) / "grafana_admin_password").read_text().strip()
    base = f"http://{address}:3000/grafana"
    assert wait_for(lambda: requests.get(f"{base}/api/health", timeout=5).ok, timeout=60)
    assert requests.get(f"{base}/api/search", timeout=5).status_code == 401
    auth = (exp["grafana_admin_user"], password)
    found = {d["uid"]: d["title"] for d in requests.get(f"{base}/api/search", auth=auth, timeout=5).json()}
    assert found == STABLE_DASHBOARDS
    sources = {d["uid"] for d in requests.get(f"{base}/api/datasources", auth=auth, timeout=5).json()}
    assert sources == DATASOURCE_UIDS


def test_no_container_on_the_network_can_stop_prometheus():
    """The lifecycle API is off (issue 13): POST /-/quit from inside the stack network is refused."""
    out = docker("exec", PROMETHEUS, "wget", "-q", "-S", "-O", "-", "--post-data=", "http://127.0.0.1:9090/-/quit",
                 check=False)
    assert out.returncode != 0 and "403" in out.stdout + out.stderr, out.stdout + out.stderr
    assert "--web.enable-lifecycle" not in json.loads(docker("inspect", PROMETHEUS).stdout)[0]["Args"]
    time.sleep(1)
    assert json.loads(docker("inspect", PROMETHEUS).stdout)[0]["State"]["Running"]


def test_second_converge_changed_nothing():
    log = harness.require_env("MMOPS_OBS_IDEMPOTENCE_LOG", RUN_SH)
    recap = re.findall(r"changed=(\d+)", Path(log).read_text())
    assert recap and all(n == "0" for n in recap), Path(log).read_text()[-3000:]


def test_a_changed_rule_reloads_prometheus_and_a_service_turned_off_is_removed():
    """Last: re-converges the monitoring play with one more rule group and without cAdvisor."""
    playbook = harness.require_env("MMOPS_OBS_PLAYBOOK", RUN_SH)
    exp = expected()
    started = json.loads(docker("inspect", PROMETHEUS).stdout)[0]["State"]["StartedAt"]
    extra = {"monitoring_extra_rules": [{"name": "integration-test", "rules": [
        {"alert": "IntegrationTestRule", "expr": "vector(1) > 0", "labels": {"severity": "none"}}]}],
        "stack_services": [s for s in exp["services"] if s != "cadvisor"]}
    result = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), playbook, "--skip-tags", "data", "-e", json.dumps(extra)],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "RUNNING HANDLER [mattermost_ops.stack.monitoring : Reload Prometheus]" in result.stdout
    assert "RUNNING HANDLER [mattermost_ops.stack.monitoring : Wait until Prometheus reports the reload " \
           "successful]" in result.stdout

    def names():
        return {r["name"] for g in prom("/api/v1/rules")["data"]["groups"] for r in g["rules"]}

    assert wait_for(lambda: "IntegrationTestRule" in names(), timeout=30), names()
    assert json.loads(docker("inspect", PROMETHEUS).stdout)[0]["State"]["StartedAt"] == started
    assert docker("inspect", "cadvisor", check=False).returncode != 0, "cadvisor was not removed"
    jobs = {t["labels"]["job"] for t in prom("/api/v1/targets", state="active")["data"]["activeTargets"]}
    assert "cadvisor" not in jobs and "node_exporter" in jobs
