"""App tier in the 2 vCPU / 4 GB instance: Mattermost replicas (the test double here) behind
Nginx least_conn, carrying exactly the plan. Requests go to Nginx's published port 80 from
inside the instance, as a browser on the network would."""
import json
import shlex
import uuid

testinfra_hosts = ["ansible://all"]

BASE = "http://127.0.0.1"


def _api(host, method, path, body=None, token=None, headers_out=False):
    cmd = ["curl", "-sS", "-X", method, "-H", "Content-Type: application/json", "-w", "\\n%{http_code}"]
    if headers_out:
        cmd += ["-D", "/dev/stderr"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        cmd += ["--data", json.dumps(body)]
    result = host.run(" ".join(shlex.quote(c) for c in cmd + [BASE + path]))
    text, _, status = result.stdout.rpartition("\n")
    return int(status), (json.loads(text) if text.strip() else None), result.stderr


def test_ping_through_nginx(host):
    status, body, _ = _api(host, "GET", "/api/v4/system/ping")
    assert status == 200 and body["status"] == "OK"


def test_user_can_sign_up_log_in_and_post(host):
    name = "verify" + uuid.uuid4().hex[:8]
    status, user, _ = _api(host, "POST", "/api/v4/users",
                           {"username": name, "email": f"{name}@example.com", "password": "Verify-password-1"})
    assert status == 201, user
    status, _, headers = _api(host, "POST", "/api/v4/users/login",
                              {"login_id": name, "password": "Verify-password-1"}, headers_out=True)
    assert status in (200, 201)
    token = next(line.split(":", 1)[1].strip() for line in headers.splitlines() if line.lower().startswith("token:"))
    status, team, _ = _api(host, "POST", "/api/v4/teams", {"name": name, "display_name": name, "type": "O"}, token)
    assert status == 201, team
    status, channel, _ = _api(host, "POST", "/api/v4/channels",
                              {"team_id": team["id"], "name": name, "display_name": name, "type": "O"}, token)
    assert status == 201, channel
    status, post, _ = _api(host, "POST", "/api/v4/posts", {"channel_id": channel["id"], "message": "hello"}, token)
    assert status == 201 and post["message"] == "hello"


def test_requests_are_spread_over_every_replica(host, plan):
    host.run("for i in $(seq 60); do curl -s -o /dev/null http://127.0.0.1/api/v4/system/ping; done")
    lines = host.check_output("tail -n 60 /var/log/mattermost-ops/nginx/access.log").splitlines()
    upstreams = {json.loads(line)["upstream_addr"] for line in lines if line.strip()}
    assert len(upstreams) == plan["mattermost"]["replicas"], upstreams


def test_replicas_carry_the_plan(host, plan):
    mm = plan["mattermost"]
    expected = {
        "MM_SQLSETTINGS_MAXOPENCONNS": str(mm["MaxOpenConns"]),
        "MM_SQLSETTINGS_MAXIDLECONNS": str(mm["MaxIdleConns"]),
        "MM_SQLSETTINGS_CONNMAXLIFETIMEMILLISECONDS": str(mm["ConnMaxLifetimeMilliseconds"]),
        "MM_SQLSETTINGS_CONNMAXIDLETIMEMILLISECONDS": str(mm["ConnMaxIdleTimeMilliseconds"]),
        "MM_SQLSETTINGS_QUERYTIMEOUT": str(mm["QueryTimeout"]),
        "GOMAXPROCS": str(mm["GOMAXPROCS"]),
        "GOMEMLIMIT": mm["GOMEMLIMIT"],
        "MM_PLUGINSETTINGS_AUTOMATICPREPACKAGEDPLUGINS": str(plan["inputs"]["plugins"] > 0).lower(),
    }
    for n in range(1, mm["replicas"] + 1):
        info = json.loads(host.check_output(f"docker inspect mattermost-{n}"))[0]
        env = dict(item.split("=", 1) for item in info["Config"]["Env"])
        for key, value in expected.items():
            assert env.get(key) == value, (n, key)
        assert "binary_parameters=yes" in env["MM_SQLSETTINGS_DATASOURCE"]
        assert info["HostConfig"]["Memory"] == plan["containers"]["mattermost"]["memory_mb"] * 1024 * 1024
        assert info["HostConfig"]["NanoCpus"] == int(round(plan["containers"]["mattermost"]["cpus"] * 1e9))
        assert "no-new-privileges" in " ".join(info["HostConfig"]["SecurityOpt"] or [])
        assert info["HostConfig"]["PidsLimit"] == 200
        assert not info["HostConfig"]["PortBindings"]
