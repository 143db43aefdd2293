"""Load tests (playbooks/loadtest.yml: the loadtest role; loadtest/*.js) against a running stack, through Nginx on loopback.

Everything comes from the environment (run.sh sets it):
  LT_URL              Nginx of the stack (default http://127.0.0.1:18090)
  LT_PREFIX           prefix of the stack's containers and of /tmp/mmops-<prefix> (default lt)
  LT_SCENARIO_SECONDS length of each k6 run (default 8)
Only the stack's own containers and loopback are used; every k6 run is bounded (a few VUs, seconds).
"""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import harness
import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
URL = os.environ.get("LT_URL", "http://127.0.0.1:18090").rstrip("/")
PREFIX = os.environ.get("LT_PREFIX", "lt")
SECONDS = int(os.environ.get("LT_SCENARIO_SECONDS", "8"))
STACK_DIR = Path(f"/tmp/mmops-{PREFIX}")
STATE_DIR = STACK_DIR / "loadtest-state"
ACCESS_LOG = STACK_DIR / "log" / "nginx" / "access.log"
POSTGRES, PGBOUNCER, NGINX = f"{PREFIX}-postgres", f"{PREFIX}-pgbouncer", f"{PREFIX}-nginx"
REPLICAS = [f"{PREFIX}-mattermost-{i}" for i in (1, 2, 3)]
SCENARIOS = ["benchmark", "scenario-a", "scenario-b", "scenario-c"]

# --------------------------------------------------------------------------- helpers
def playbook(extra, timeout=600):
    """(exit status, output) of playbooks/loadtest.yml against the stack, with a few VUs."""
    extra_vars = {"loadtest_base_url": URL, "loadtest_state_dir": str(STATE_DIR), "loadtest_vus": 3,
                  "loadtest_duration": f"{SECONDS}s", "loadtest_postgres_container": POSTGRES, **extra}
    proc = subprocess.run([str(BIN / "ansible-playbook"), "playbooks/loadtest.yml", "-e", json.dumps(extra_vars)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                               "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
    return proc.returncode, proc.stdout + proc.stderr


def k6(script, accounts, summary, seconds=6, vus=3):
    """Run one scenario directly (no playbook): exit status and the exported summary."""
    proc = subprocess.run([str(BIN / "k6"), "run", "--quiet", "--no-color", "--address", "", "--summary-export",
                           str(summary), "-e", f"BASE_URL={URL}", "-e", f"ACCOUNTS_FILE={accounts}", "-e", f"VUS={vus}",
                           "-e", f"DURATION={seconds}s", str(ROOT / "loadtest" / script)],
                          capture_output=True, text=True, timeout=seconds + 120, check=False)
    return proc.returncode, json.loads(Path(summary).read_text())["metrics"], proc.stdout + proc.stderr


def crossed(metrics):
    return sorted(f"{name} {rule}" for name, metric in metrics.items()
                  for rule, failed in (metric.get("thresholds") or {}).items() if failed)


def api(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(URL + "/api/v4" + path, data=json.dumps(body).encode() if body is not None else None,
                                     method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read() or b"null")


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check).stdout


def nano_cpus(name):
    return json.loads(docker("inspect", name))[0]["HostConfig"]["NanoCpus"]


def psql(sql):
    return docker("exec", "-u", "postgres", POSTGRES, "psql", "-X", "-A", "-t", "-d", "mattermost", "-c", sql).strip()


def wait_database_ok(timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _, body = api("GET", "/system/ping?get_server_status=true")
            if status == 200 and body.get("database_status") == "OK":
                # every replica: a few pings spread by least_conn
                if all(api("GET", "/system/ping?get_server_status=true")[0] == 200 for _ in range(6)):
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError("the stack does not answer with its database OK")


def access_log_size():
    return ACCESS_LOG.stat().st_size if ACCESS_LOG.exists() else 0


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def accounts(tmp_path_factory):
    """Three accounts in a team of their own, made here through the API, for k6 runs without the playbook."""
    tag, password = uuid.uuid4().hex[:8], "Lt-test-" + uuid.uuid4().hex[:12]
    users = []
    for i in range(3):
        name = f"ltk6-{tag}-{i}"
        status, _, user = api("POST", "/users", {"username": name, "email": f"{name}@example.com", "password": password})
        assert status == 201, user
        users.append({"username": name, "password": password, "id": user["id"]})
    status, headers, _ = api("POST", "/users/login", {"login_id": users[0]["username"], "password": password})
    assert status in (200, 201)
    token = headers["Token"]
    status, _, team = api("POST", "/teams", {"name": f"ltk6-{tag}", "display_name": "k6 direct", "type": "O"}, token)
    assert status == 201, team
    for user in users[1:]:
        status, _, member = api("POST", f"/teams/{team['id']}/members", {"team_id": team["id"], "user_id": user["id"]}, token)
        assert status == 201, member
    status, _, channels = api("GET", f"/users/me/teams/{team['id']}/channels", token=token)
    assert status == 200 and channels
    path = tmp_path_factory.mktemp("accounts") / "accounts.json"
    path.write_text(json.dumps({"team_id": team["id"], "channel_ids": [c["id"] for c in channels], "users": users}))
    path.chmod(0o600)
    return path


class NotOkTarget:
    """A loopback HTTP server whose ping answers 503 {"status":"UNHEALTHY"}; it records every path asked for."""

    def __init__(self):
        paths = self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # pylint: disable=invalid-name
                paths.append(self.path)
                body = json.dumps({"status": "UNHEALTHY"}).encode()
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # pylint: disable=invalid-name

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- 1. bad input: no load at all
@pytest.mark.parametrize("case", ["unknown-scenario", "zero-vus", "no-answer", "ping-not-ok"])
def test_bad_input_stops_before_any_load(case, tmp_path):
    results = tmp_path / "results"
    target = NotOkTarget() if case == "ping-not-ok" else None
    extra, message = {
        # the role's argument specs name the scenarios there are
        "unknown-scenario": ({"loadtest_scenarios": ["benchmark", "scenario-x"]},
                             "loadtest_scenarios must be one or more of: benchmark, scenario-a, scenario-b, scenario-c"),
        "zero-vus": ({"loadtest_vus": 0}, "loadtest_vus=0: use a whole number from 1"),
        "no-answer": ({"loadtest_base_url": f"http://127.0.0.1:{free_port()}"}, 'did not answer {"status":"OK"}'),
        "ping-not-ok": ({"loadtest_base_url": target.url if target else ""}, 'did not answer {"status":"OK"} (HTTP 503'),
    }[case]
    before = access_log_size()
    try:
        rc, output = playbook({**extra, "loadtest_results_dir": str(results)}, timeout=120)
    finally:
        if target:
            target.close()
    flat = " ".join(output.split())
    assert rc != 0, output[-3000:]
    assert message in flat and ("No load was sent" in flat or case == "unknown-scenario"), output[-3000:]
    assert case != "unknown-scenario" or "scenario-x" in flat
    assert not results.exists(), "the results directory was created"
    assert "loadtest : Run " not in output and "Seed the accounts" not in output, "it went on after the check"
    if target:
        assert target.paths == ["/api/v4/system/ping"], target.paths  # the ping and nothing else
    if case in ("unknown-scenario", "zero-vus"):
        time.sleep(1)
        assert access_log_size() == before, "requests reached the stack"


# --------------------------------------------------------------------------- 2. every scenario passes
def test_every_scenario_passes(tmp_path):
    results, t0 = tmp_path / "results", int(time.time() * 1000)
    cpus_before = nano_cpus(POSTGRES)
    rc, output = playbook({"loadtest_scenarios": SCENARIOS, "loadtest_results_dir": str(results)})
    assert rc == 0, output[-5000:]
    flat = " ".join(output.split())
    summary = json.loads((results / "summary.json").read_text())
    assert [s["scenario"] for s in summary["scenarios"]] == SCENARIOS
    for name in SCENARIOS:
        assert f"{name}: PASSED" in flat, output[-3000:]
        metrics = json.loads((results / f"{name}.summary.json").read_text())["metrics"]
        assert metrics["http_reqs"]["count"] > 5, name
        assert metrics["http_req_failed"]["value"] == 0 and metrics["errors"]["value"] == 0, name
        # every request is counted in the error rate, successes too
        assert metrics["errors"]["passes"] + metrics["errors"]["fails"] == metrics["http_reqs"]["count"], name
        assert not crossed(metrics), name
        for rule in ("http_req_failed", "errors", "http_req_duration", "http_req_duration{name:login}"):
            assert metrics[rule].get("thresholds"), f"{name}: no threshold on {rule}"
        html = (results / f"{name}.html").read_text()
        assert "<html" in html.lower() and len(html) > 50_000, f"{name}: no HTML report"
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", html), f"{name}: the report needs the network"
        k6_log = (results / f"{name}.log").read_text()
        accounts_file = re.search(r"ACCOUNTS_FILE=(\S+)", k6_log).group(1)
        assert not Path(accounts_file).exists(), "the accounts file (passwords) was left behind"
    # scenario C throttled PostgreSQL during its run and put the limit back
    for task in (r"Throttle PostgreSQL \(docker update --cpus 0\.2\)", r"Put PostgreSQL's CPU limit back"):
        assert re.search(task + r"\] \**\nchanged: ", output), f"{task}: did not run"
    assert nano_cpus(POSTGRES) == cpus_before
    # each VU logged in once per scenario, with its own account (plus one login by the seeding for a
    # user that existed already, when the stack was reused without the seeding's record)
    logins = psql(f"SELECT count(*) FROM sessions s JOIN users u ON u.id = s.userid "
                  f"WHERE u.username LIKE 'loadtest-0%' AND s.createat >= {t0} GROUP BY u.username").split()
    assert len(logins) == 3 and all(int(n) in (4, 5) for n in logins), \
        f"logins per account {logins}: not one per scenario for each of the 3 VUs"
    posters = int(psql(f"SELECT count(DISTINCT userid) FROM posts WHERE message LIKE 'scenario b %' AND createat >= {t0}"))
    assert posters == 3, f"scenario B posted as {posters} users, not 3"
    channels = int(psql(f"SELECT count(*) FROM channels WHERE name LIKE 'lt-a-%' AND createat >= {t0}"))
    assert channels > 3, "scenario A created no channels"


# --------------------------------------------------------------------------- 3. thresholds can fail
def test_crossed_thresholds_fail_the_playbook_and_postgres_gets_its_cpus_back(tmp_path):
    """(Runs after test_every_scenario_passes, against the accounts it seeded.)"""
    cpus_before, seeded_before = nano_cpus(POSTGRES), any(STATE_DIR.glob("accounts-*.json"))
    rc, output = playbook({"loadtest_scenarios": ["scenario-b", "scenario-c"], "loadtest_duration": "4s",
                           "loadtest_k6_env": {"P95_MS": 0.001}, "loadtest_results_dir": str(tmp_path / "r")})
    flat = " ".join(output.split())
    assert rc != 0, output[-3000:]
    # a second run reuses the accounts seeded by the first: no user is created or logged in for its id
    if seeded_before:
        assert "Accounts: 0 created, 3 reused" in flat, "users were seeded again"
    assert ("Failed: scenario-b (exit 99: a threshold was crossed), scenario-c (exit 99: a threshold was crossed)"
            in flat), output[-3000:]
    assert "thresholds crossed: http_req_duration p(95)<0.001" in flat
    assert nano_cpus(POSTGRES) == cpus_before, "PostgreSQL kept the throttled CPU limit"


def test_a_replica_answering_500_fails_the_scenario(accounts, tmp_path):
    victim = REPLICAS[1]
    docker("kill", "-s", "USR1", victim)  # the double's run-time fault: every API call but the ping answers 500
    try:
        rc, metrics, output = k6("scenario-b.js", accounts, tmp_path / "summary.json")
    finally:
        docker("kill", "-s", "USR2", victim)
    print(f"errors {metrics['errors']['value']:.1%} of {metrics['http_reqs']['count']} requests")
    assert rc == 99, output[-3000:]
    assert metrics["http_req_failed"]["value"] > 0.05
    assert {"errors rate<0.01", "http_req_failed rate<0.01"} <= set(crossed(metrics)), crossed(metrics)
    wait_database_ok()


def test_a_stopped_pgbouncer_fails_the_scenario(accounts, tmp_path):
    docker("stop", "-t", "5", PGBOUNCER)
    try:
        rc, metrics, output = k6("benchmark.js", accounts, tmp_path / "summary.json")
    finally:
        docker("start", PGBOUNCER)
        harness.wait_healthy(PGBOUNCER)
    assert rc == 99, output[-3000:]
    assert metrics["http_req_failed"]["value"] > 0.5, metrics["http_req_failed"]
    assert {"errors rate<0.01", "http_req_failed rate<0.01"} <= set(crossed(metrics)), crossed(metrics)
    wait_database_ok()
