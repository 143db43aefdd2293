"""Checks of a deployed app tier (Mattermost replicas behind Nginx), independent of how it was deployed.

Everything comes from the environment:
  APP_URL           Nginx as users reach it (default http://127.0.0.1:18080)
  APP_EXPECTED      JSON with names and the effective settings (default /tmp/mmops-app/app-expected.json,
                    written by play.yml)
  APP_SECRETS_DIR   directory with one file per secret (default /tmp/mmops-app/secrets)
  APP_ACCESS_LOG    Nginx's JSON access log as a file readable here (default: "access_log" of APP_EXPECTED)
  APP_DOCKER        docker CLI command (default: docker)
  APP_K6            k6 binary (default: k6 beside this Python, else on PATH)
  APP_LOAD_SECONDS  length of each load run (default 20)
  APP_CONVERGE      command that converges the stack (ansible-playbook ...); required
  APP_RESTART       command that runs playbooks/restart.yml; required
Without the deployment or a required variable the suite fails at collection (it never skips).
Traffic goes only to loopback and to the stack's own containers; every load run is bounded in time and
in virtual users and stops by itself.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import harness
import pytest

HERE = Path(__file__).resolve().parent
URL = os.environ.get("APP_URL", "http://127.0.0.1:18080").rstrip("/")
RUN_SH = "tests/integration/app_tier/run.sh"
EXPECTED = json.loads(harness.require_deployment(os.environ.get("APP_EXPECTED", "/tmp/mmops-app/app-expected.json"),
                                                 RUN_SH).read_text())
SECRETS_DIR = Path(os.environ.get("APP_SECRETS_DIR", "/tmp/mmops-app/secrets"))
ACCESS_LOG = Path(os.environ.get("APP_ACCESS_LOG", EXPECTED["access_log"]))
DOCKER = shlex.split(os.environ.get("APP_DOCKER", "docker"))
K6 = os.environ.get("APP_K6") or (shutil.which("k6", path=str(Path(sys.executable).parent)) or "k6")
LOAD_SECONDS = int(os.environ.get("APP_LOAD_SECONDS", "20"))
CONVERGE = harness.require_env("APP_CONVERGE", RUN_SH, split=True)
RESTART = harness.require_env("APP_RESTART", RUN_SH, split=True)
REPLICAS = EXPECTED["replicas"]
NETWORK = EXPECTED["network"]


# --------------------------------------------------------------------------- helpers
def api(method, path, body=None, token=None, timeout=10):
    """(status, headers, JSON body) of one request through Nginx."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read() or b"null")


def docker(*args, timeout=60, check=True):
    return subprocess.run(DOCKER + list(args), capture_output=True, text=True, timeout=timeout, check=check).stdout


def inspect(name):
    return json.loads(docker("inspect", name))[0]


def replica_addresses():
    """Address of each replica on the stack network -> replica name."""
    return {inspect(name)["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]: name for name in REPLICAS}


def container_state(names):
    """Id and StartedAt of containers (a converge that fails early must not change them)."""
    return {name: (c["Id"], c["State"]["StartedAt"]) for name in names for c in [inspect(name)]}


def stack_containers():
    out = docker("ps", "-a", "--filter", f"network={NETWORK}", "--format", "{{.Names}}")
    return sorted(out.split())


def access_log_offset():
    return ACCESS_LOG.stat().st_size if ACCESS_LOG.exists() else 0


def access_log_since(offset, settle=1.0):
    time.sleep(settle)  # Nginx writes the line after the response
    with ACCESS_LOG.open(encoding="utf-8") as handle:
        handle.seek(offset)
        return [json.loads(line) for line in handle if line.strip()]


def run(cmd, extra_vars=None, timeout=300):
    cmd = list(cmd)
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    recap = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    counts = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, recap.groups()))) if recap else {}
    return proc.returncode, output, counts


@pytest.fixture(scope="module")
def session():
    """A user (logged in), a team and a channel with a few posts, created through Nginx."""
    name = "u" + uuid.uuid4().hex[:10]
    status, _hdrs, user = api("POST", "/api/v4/users",
                              {"username": name, "email": f"{name}@example.test", "password": "app-tier-Test-1"})
    assert status == 201, user
    status, headers, me = api("POST", "/api/v4/users/login", {"login_id": name, "password": "app-tier-Test-1"})
    assert status in (200, 201), me
    token = headers["Token"]
    status, _hdrs, team = api("POST", "/api/v4/teams", {"name": "t" + name, "display_name": "App tier", "type": "O"}, token)
    assert status == 201, team
    status, _hdrs, channel = api("POST", "/api/v4/channels",
                                 {"team_id": team["id"], "name": "c" + name, "display_name": "Load", "type": "O"}, token)
    assert status == 201, channel
    for i in range(5):
        status, _hdrs, post = api("POST", "/api/v4/posts", {"channel_id": channel["id"], "message": f"seed {i}"}, token)
        assert status == 201, post
    return {"user": user, "token": token, "team": team, "channel": channel}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def k6_start(session_data, duration, summary, address=None, fresh_connections=False):
    """k6 in the background; with `address` it can be ended early by k6_stop (externally controlled). With
    fresh_connections every request opens its own connection to Nginx (--no-connection-reuse)."""
    extra = ["--address", address, "-e", "EXECUTOR=external"] if address else ["--address", f"127.0.0.1:{free_port()}"]
    extra += ["--no-connection-reuse"] if fresh_connections else []
    cmd = [K6, "run", "-q", "--no-color", "--summary-export", str(summary), *extra,
           "-e", f"BASE_URL={URL}", "-e", f"TOKEN={session_data['token']}",
           "-e", f"CHANNEL_ID={session_data['channel']['id']}", "-e", "VUS=20", "-e", f"DURATION={duration}s",
           "-e", "WRITE_SHARE=0.1", str(HERE / "load.js")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def k6_stop(proc, address):
    """Pause (VUs finish their iteration and start no other), then interrupt: no request is cut off."""
    subprocess.run([K6, "pause", "--address", address], capture_output=True, timeout=30, check=True)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)


def k6_result(proc, summary, timeout):
    output = proc.communicate(timeout=timeout)[0]
    metrics = json.loads(Path(summary).read_text())["metrics"]

    def failed(kind):
        rate = metrics[f"http_req_failed{{kind:{kind}}}"]
        return rate["passes"], rate["passes"] + rate["fails"]  # (failed, total) requests
    return {"read": failed("read"), "write": failed("write"), "output": output[-2000:]}


# --------------------------------------------------------------------------- 1. serving
def test_ping_through_nginx():
    status, headers, body = api("GET", "/api/v4/system/ping")
    assert status == 200 and body["status"] == "OK"
    status, _hdrs, body = api("GET", "/api/v4/system/ping?get_server_status=true")
    assert status == 200 and body["status"] == "OK" and body.get("database_status") == "OK", body
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"]
    assert "Strict-Transport-Security" not in headers  # HSTS only with TLS
    assert headers.get_all("X-Frame-Options") == ["SAMEORIGIN"]  # once, not Mattermost's copy too


def test_user_team_channel_post_flow(session):
    token, channel = session["token"], session["channel"]
    status, _hdrs, me = api("GET", "/api/v4/users/me", token=token)
    assert status == 200 and me["id"] == session["user"]["id"]
    status, _hdrs, teams = api("GET", "/api/v4/users/me/teams", token=token)
    assert status == 200 and session["team"]["id"] in [t["id"] for t in teams]
    status, _hdrs, channels = api("GET", f"/api/v4/users/me/teams/{session['team']['id']}/channels", token=token)
    assert status == 200 and {channel["id"], } <= {c["id"] for c in channels}
    assert "town-square" in {c["name"] for c in channels}
    status, _hdrs, post = api("POST", "/api/v4/posts", {"channel_id": channel["id"], "message": "hello app tier"}, token)
    assert status == 201 and post["message"] == "hello app tier"
    status, _hdrs, posts = api("GET", f"/api/v4/channels/{channel['id']}/posts", token=token)
    assert status == 200 and posts["order"][0] == post["id"]
    status, _hdrs, error = api("GET", "/api/v4/users/me", token="not-a-token")
    assert status == 401 and error["status_code"] == 401 and error["id"]


def test_requests_are_spread_over_all_replicas():
    offset, addresses = access_log_offset(), replica_addresses()
    for _attempt in range(60):
        assert api("GET", "/api/v4/system/ping")[0] == 200
    lines = [entry for entry in access_log_since(offset) if entry["uri"] == "/api/v4/system/ping"]
    assert len(lines) >= 60, f"{len(lines)} ping lines in {ACCESS_LOG}"
    for field in ("time", "remote_addr", "method", "uri", "status", "request_time", "upstream_addr",
                  "upstream_response_time", "upstream_status"):
        assert field in lines[-1], field
    served = Counter(addresses.get(entry["upstream_addr"].split(",")[-1].strip().rsplit(":", 1)[0], "?")
                     for entry in lines)
    assert set(served) == set(REPLICAS), served
    assert min(served.values()) >= 10, served


def test_json_logs_of_each_replica():
    for name in REPLICAS:
        log = Path(EXPECTED["mattermost_log_dir"]) / name / "mattermost.log"
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        assert lines, f"{log} is empty"
        assert {"timestamp", "level", "msg", "caller"} <= set(lines[0]), lines[0]


# --------------------------------------------------------------------------- 2. containers as planned
def test_replicas_carry_the_planned_settings():
    password = (SECRETS_DIR / "postgres_mattermost_password").read_text()
    for name in REPLICAS:
        container = inspect(name)
        env = dict(item.split("=", 1) for item in container["Config"]["Env"])
        for key, value in EXPECTED["env"].items():
            assert env.get(key) == str(value), f"{name}: {key}={env.get(key)!r}, planned {value!r}"
        dsn = env["MM_SQLSETTINGS_DATASOURCE"]
        assert dsn == (f"postgres://{EXPECTED['datasource_user']}:{urllib.parse.quote(password, safe='')}"
                       f"{EXPECTED['datasource_suffix']}"), f"{name}: unexpected DataSource"
        host = container["HostConfig"]
        assert host["Memory"] == EXPECTED["memory_bytes"] and host["MemorySwap"] == EXPECTED["memory_bytes"]
        assert host["NanoCpus"] == EXPECTED["nano_cpus"]
        assert host["PidsLimit"] == EXPECTED["pids_limit"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), f"{name}: {host['CapDrop']} {host['CapAdd']}"
        assert "/tmp" in (host.get("Tmpfs") or {})
        assert not host.get("PortBindings"), f"{name} publishes {host['PortBindings']}"
        assert list(container["NetworkSettings"]["Networks"]) == [NETWORK]
        # What the distroless image can run: its own mmctl through the local-mode socket (no curl, no shell).
        assert container["Config"]["Healthcheck"]["Test"] == ["CMD", "/mattermost/bin/mmctl", "system", "status", "--local"]
        assert container["State"]["Health"]["Status"] == "healthy"
        mounts = {m["Destination"]: m for m in container["Mounts"]}
        for path in ("/mattermost/data", "/mattermost/config", "/mattermost/logs", "/mattermost/plugins",
                     "/mattermost/client/plugins"):
            assert mounts[path]["Type"] == "bind", f"{name}: {path} is not a host directory"
            assert os.stat(mounts[path]["Source"]).st_uid == 2000, f"{name}: {path} is not owned by uid 2000"


def test_only_nginx_publishes_ports():
    nginx = EXPECTED["nginx_container"]
    for name in stack_containers():
        bindings = {port: b for port, b in (inspect(name)["HostConfig"].get("PortBindings") or {}).items() if b}
        if name == nginx:
            assert set(bindings) <= {"80/tcp", "443/tcp"}, bindings
            assert f"{EXPECTED['status_port']}/tcp" not in bindings
        else:
            assert not bindings, f"{name} publishes {bindings}"
    host = inspect(nginx)["HostConfig"]
    assert host["Memory"] == EXPECTED["nginx_memory_bytes"] and "no-new-privileges" in host["SecurityOpt"]
    # Only what the master needs to bind 80/443 and switch to the workers' user.
    assert host["CapDrop"] == ["ALL"]
    assert {cap.removeprefix("CAP_") for cap in host["CapAdd"]} == {"CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE"}


def test_stub_status_answers_inside_the_stack_network():
    # From a throwaway container on the stack network (the Mattermost image has no curl): where the
    # exporter scrapes it. The Nginx image lends its curl.
    image = inspect(EXPECTED["nginx_container"])["Config"]["Image"]
    out = docker("run", "--rm", "--network", NETWORK, "--entrypoint", "curl", image, "-fsS", "--max-time", "5",
                 f"http://{EXPECTED['nginx_container']}:{EXPECTED['status_port']}/nginx_status")
    assert "Active connections" in out


def test_the_nginx_reload_checks_first_and_keeps_serving():
    """The reload other roles call: with a replica listed in the upstream stopped (its name does not
    resolve), the check fails the run and Nginx keeps serving with its running configuration; with
    nginx_reload_best_effort (the restore starting replicas one by one) the run goes on; with every replica
    back it reloads."""
    reload = [*CONVERGE[:-1], str(HERE / "reload.yml")]
    victim = REPLICAS[-1]
    docker("stop", "-t", "10", victim)
    try:
        strict = run(reload)
        lenient = run(reload, {"nginx_reload_best_effort": True})
        status, _hdrs, _body = api("GET", "/api/v4/system/ping")
    finally:
        docker("start", victim)
        harness.wait_healthy(victim)
    assert strict[0] != 0 and strict[2].get("failed") == 1 and victim in strict[1], strict[1][-3000:]
    assert lenient[0] == 0 and lenient[2].get("changed") == 0, lenient[1][-3000:]
    assert status == 200
    rc, output, counts = run(reload)
    assert rc == 0 and counts["changed"] == 1 and "TASK [mattermost_ops.stack.nginx : Reload Nginx]" in output, output[-3000:]


# --------------------------------------------------------------------------- 3. failures under load
def test_a_stopped_replica_costs_no_idempotent_request(session, tmp_path):
    victim = REPLICAS[1]
    proc = k6_start(session, LOAD_SECONDS, tmp_path / "summary.json")
    try:
        time.sleep(LOAD_SECONDS / 4)
        docker("stop", "-t", "10", victim)
        time.sleep(LOAD_SECONDS / 4)
        docker("start", victim)
        result = k6_result(proc, tmp_path / "summary.json", timeout=LOAD_SECONDS + 60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        docker("start", victim, check=False)
    harness.wait_healthy(victim)
    failed, total = result["read"]
    print(f"reads {total}, failed {failed}; writes {result['write'][1]}, failed {result['write'][0]}")
    assert total > 100, result["output"]
    assert failed == 0, f"{failed} of {total} GETs failed while {victim} was stopped:\n{result['output']}"


def test_rolling_restart_under_load_fails_no_request(session, tmp_path):
    """Each replica is drained at Nginx (marked down, reload) before it stops, so no request, POST
    included, meets a replica that is closing its connections. Each reload closes Nginx's idle client
    connections: browsers resend a request that meets such a close on a reused connection, Go clients
    (k6 here) do not, so k6 opens a connection per request; what is asserted is that Nginx answered
    every request, with no 5xx, and k6 saw no failure."""
    before, address = container_state(REPLICAS), f"127.0.0.1:{free_port()}"
    offset = access_log_offset()
    proc = k6_start(session, 240, tmp_path / "summary.json", address, fresh_connections=True)  # ended after the restart
    try:
        time.sleep(3)
        rc, output, counts = run(RESTART, timeout=300)
        time.sleep(2)
        k6_stop(proc, address)
        result = k6_result(proc, tmp_path / "summary.json", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0 and counts.get("failed") == 0, output[-4000:]
    after = container_state(REPLICAS)
    for name in REPLICAS:
        assert after[name][0] == before[name][0], f"{name} was recreated, not restarted"
        assert after[name][1] != before[name][1], f"{name} was not restarted"
    starts = sorted(after[name][1] for name in REPLICAS)
    assert len(set(starts)) == len(REPLICAS)
    (failed_reads, reads), (failed_writes, writes) = result["read"], result["write"]
    print(f"reads {reads}, failed {failed_reads}; writes {writes}, failed {failed_writes}")
    assert reads > 100 and writes > 10, result["output"]
    server_errors = [e for e in access_log_since(offset) if int(e["status"]) >= 500]
    assert not server_errors, server_errors[:5]
    assert failed_reads == 0 and failed_writes == 0, result["output"]
    for name in REPLICAS:
        harness.wait_healthy(name, timeout=30)


# --------------------------------------------------------------------------- 4. converging again
def test_second_converge_changes_nothing():
    rc, output, counts = run(CONVERGE)
    assert rc == 0 and counts["failed"] == 0, output[-4000:]
    changed = re.findall(r"TASK \[([^\]]+)\][^\n]*\n(?:[^\n]*\n)*?changed:", output)
    assert counts["changed"] == 0, f"changed={counts['changed']}: {changed}"


def test_check_diff_shows_a_pool_change_and_fails_nothing():
    before = container_state(stack_containers())
    planned = int(EXPECTED["env"]["MM_SQLSETTINGS_MAXOPENCONNS"])
    rc, output, counts = run(CONVERGE + ["--check", "--diff"],
                             {"stack_plan_overrides": {"mattermost": {"MaxOpenConns": planned + 2}}})
    assert rc == 0 and counts["failed"] == 0, output[-4000:]
    assert f"-MM_SQLSETTINGS_MAXOPENCONNS={planned}" in output
    assert f"+MM_SQLSETTINGS_MAXOPENCONNS={planned + 2}" in output
    assert counts["changed"] >= 1 + len(REPLICAS)  # the environment file and each replica
    assert container_state(stack_containers()) == before  # check mode changed nothing


@pytest.mark.parametrize("extra_vars, message", [
    ({"stack_mattermost_replicas": 0}, "replicas=0"),
    ({"stack_site_url": "not a url"}, "is not a URL"),
    ({"mattermost_edition": "enterprise", "stack_mattermost_license_file": "/nonexistent/mattermost.license"},
     "must exist on the controller"),
    ({"mattermost_env": {"MM_SQLSETTINGS_MAXOPENCONNS": "40"}},
     "mattermost_env.MM_SQLSETTINGS_MAXOPENCONNS sets a planned value: set stack_plan_overrides: "
     "{mattermost: {MaxOpenConns: N}} instead"),
    ({"mattermost_memory_mb": 2048},
     "mattermost_memory_mb was removed: set stack_plan_overrides: {containers: {mattermost: {memory_mb: N}}}"),
    ({"stack_plan_overrides": {"mattermost": {"GOMEMLIMIT": "off"}}}, "[gomemlimit_headroom]"),
], ids=["replicas-0", "site-url", "missing-licence", "planned-env", "removed-variable", "override-breaks-a-rule"])
def test_bad_input_fails_before_any_container_changes(extra_vars, message):
    before = container_state(stack_containers())
    rc, output, counts = run(CONVERGE, extra_vars)
    assert rc != 0 and counts.get("failed", 1) >= 1, output[-3000:]
    assert message in " ".join(output.split()), output[-3000:]
    assert container_state(stack_containers()) == before
    assert api("GET", "/api/v4/system/ping")[0] == 200
