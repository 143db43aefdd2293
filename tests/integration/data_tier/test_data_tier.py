"""Checks of a deployed data tier (PostgreSQL + PgBouncer), independent of how it was deployed.

Connection data comes from the environment:
  DT_POSTGRES_HOST, DT_PGBOUNCER_HOST  addresses of the containers, reachable from here
  DT_EXPECTED         JSON with names, ports and the effective settings (default
                      /tmp/mmops-test/expected.json, written by play.yml)
  DT_SECRETS_DIR      directory with one file per secret (default /tmp/mmops-test/secrets)
  DT_HOST_ADDRESSES   space-separated host addresses that must NOT answer on the database ports
                      (default: 127.0.0.1)
  DT_CONVERGE         command that converges the stack (ansible-playbook ...); required (without
                      it, or without the deployment, the suite fails at collection: it never skips)
  DT_DOCKER           docker CLI command (default: docker), to read container start times
Traffic goes only to the stack's own containers and to this host's own addresses; every
connection opened here is closed again and every loop is bounded.
"""

import json
import os
import re
import shlex
import socket
import subprocess
import threading
import time

import harness
import psycopg
import pytest

RUN_SH = "tests/integration/data_tier/run.sh"
EXPECTED_FILE = harness.require_deployment(os.environ.get("DT_EXPECTED", "/tmp/mmops-test/expected.json"), RUN_SH)
with open(EXPECTED_FILE, encoding="utf-8") as _file:
    EXPECTED = json.load(_file)
SECRETS_DIR = os.environ.get("DT_SECRETS_DIR", "/tmp/mmops-test/secrets")
PG_HOST = harness.require_env("DT_POSTGRES_HOST", RUN_SH)
PGB_HOST = harness.require_env("DT_PGBOUNCER_HOST", RUN_SH)
PG_PORT = EXPECTED["stack_postgres_port"]
PGB_PORT = EXPECTED["stack_pgbouncer_port"]
DB = EXPECTED["database"]
USERS = EXPECTED["users"]
CONVERGE = harness.require_env("DT_CONVERGE", RUN_SH, split=True)
DOCKER = shlex.split(os.environ.get("DT_DOCKER", "docker"))


def secret(name):
    with open(os.path.join(SECRETS_DIR, name), encoding="utf-8") as handle:
        return handle.read()


PASSWORDS = {
    "postgres": secret("postgres_superuser_password"),
    USERS["mattermost"]: secret("postgres_mattermost_password"),
    USERS["monitoring"]: secret("postgres_monitoring_password"),
    USERS["backup"]: secret("postgres_backup_password"),
    USERS["grafana"]: secret("postgres_grafana_password"),
    USERS["pgbouncer_stats"]: secret("pgbouncer_stats_password"),
}


def connect(user, dbname=DB, host=PGB_HOST, port=PGB_PORT, password=None, timeout=5):
    """Autocommit connection without server-side prepared statements (transaction pooling)."""
    return psycopg.connect(host=host, port=port, dbname=dbname, user=user,
                           password=PASSWORDS.get(user, "x") if password is None else password,
                           connect_timeout=timeout, autocommit=True, prepare_threshold=None)


def pg(user="postgres", dbname="postgres", **kwargs):
    return connect(user, dbname=dbname, host=PG_HOST, port=PG_PORT, **kwargs)


def console():
    """PgBouncer's admin console as the stats user."""
    return connect(USERS["pgbouncer_stats"], dbname="pgbouncer")


def show(conn, what):
    cur = conn.execute(f"SHOW {what}")
    names = [d.name for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def pgbouncer_config():
    with console() as conn:
        return {row["key"]: row["value"] for row in show(conn, "CONFIG")}


def container_state():
    """Id and StartedAt of both containers (they must not change when a converge fails early)."""
    names = [EXPECTED["postgres_container"], EXPECTED["pgbouncer_container"]]
    out = subprocess.run(DOCKER + ["inspect", "-f", "{{.Id}} {{.State.StartedAt}}"] + names,
                         check=True, capture_output=True, text=True, timeout=30).stdout
    return dict(zip(names, out.split("\n")))


def converge(extra_vars=None, timeout=240):
    cmd = list(CONVERGE)
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    recap = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert recap, f"no play recap in the output:\n{output[-3000:]}"
    return proc.returncode, output, {k: int(v) for k, v in zip(("ok", "changed", "unreachable", "failed"),
                                                               recap.groups())}


# --------------------------------------------------------------------------- 1. pooling and plan
def test_mattermost_user_queries_through_pgbouncer():
    with connect(USERS["mattermost"]) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (USERS["mattermost"], DB)
        conn.execute("CREATE TABLE IF NOT EXISTS dt_probe (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO dt_probe VALUES (1, 'through pgbouncer') ON CONFLICT (id) DO NOTHING")
        assert conn.execute("SELECT note FROM dt_probe WHERE id = %s", (1,)).fetchone() == ("through pgbouncer",)
    with console() as conn:
        pools = {(p["database"], p["user"]): p for p in show(conn, "POOLS")}
    assert (DB, USERS["mattermost"]) in pools
    assert pools[(DB, USERS["mattermost"])]["pool_mode"] == EXPECTED["pgbouncer"]["pool_mode"]


def test_pgbouncer_config_equals_plan():
    config = pgbouncer_config()
    for key, value in EXPECTED["pgbouncer"].items():
        assert config[key].split(".")[0] == str(value), f"{key}: SHOW CONFIG {config[key]!r}, plan {value!r}"
    assert config["auth_type"] == "scram-sha-256"
    assert config["listen_port"] == str(PGB_PORT)
    assert config["server_round_robin"] == "1"
    assert "extra_float_digits" in config["ignore_startup_parameters"]
    assert config["admin_users"] == ""
    with console() as conn:
        dbs = {d["name"]: d for d in show(conn, "DATABASES")}
    assert dbs[DB]["pool_size"] == EXPECTED["pgbouncer"]["default_pool_size"]
    assert dbs[DB]["max_connections"] == EXPECTED["pgbouncer"]["max_db_connections"]
    reserve = dbs[DB].get("reserve_pool", dbs[DB].get("reserve_pool_size"))
    assert reserve == EXPECTED["pgbouncer"]["reserve_pool_size"]


def test_postgres_settings_equal_plan():
    with pg() as conn:
        def setting(name):
            return conn.execute(f"SHOW {name}").fetchone()[0]
        assert int(setting("max_connections")) == EXPECTED["postgres"]["max_connections"]
        assert int(setting("superuser_reserved_connections")) == EXPECTED["postgres"]["superuser_reserved_connections"]
        assert setting("shared_buffers") == f"{EXPECTED['postgres']['shared_buffers_mb']}MB"
        assert setting("work_mem") == f"{EXPECTED['postgres']['work_mem_mb']}MB"
        for name in ("effective_cache_size", "maintenance_work_mem", "autovacuum_work_mem"):
            size = conn.execute("SELECT pg_size_bytes(current_setting(%s))", (name,)).fetchone()[0]
            assert size == EXPECTED["postgres"][f"{name}_mb"] * 1048576, f"{name}: {setting(name)}"
        assert float(setting("hash_mem_multiplier")) == EXPECTED["postgres"]["hash_mem_multiplier"]
        assert setting("password_encryption") == "scram-sha-256"
        assert "pg_stat_statements" in setting("shared_preload_libraries")
        assert conn.execute("SELECT count(*) FROM pg_settings WHERE pending_restart").fetchone()[0] == 0
        # Every stored password is a SCRAM verifier.
        assert conn.execute("SELECT count(*) FROM pg_authid WHERE rolpassword IS NOT NULL "
                            "AND rolpassword NOT LIKE 'SCRAM-SHA-256$%'").fetchone()[0] == 0


def test_container_limits_equal_plan():
    for role, name in (("postgres", EXPECTED["postgres_container"]), ("pgbouncer", EXPECTED["pgbouncer_container"])):
        out = subprocess.run(DOCKER + ["inspect", "-f", "{{json .HostConfig}}", name],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        host = json.loads(out)
        planned = EXPECTED["containers"][role]
        assert host["Memory"] == host["MemorySwap"] == planned["memory_mb"] * 1048576, (name, host["Memory"])
        assert host["NanoCpus"] == round(planned["cpus"] * 1e9), (name, host["NanoCpus"])


def test_mattermost_database_objects():
    with pg(dbname=DB) as conn:
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (DB,)).fetchone()
        assert owner == (USERS["mattermost"],)
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone() == (1,)
        members = dict(conn.execute(
            "SELECT m.rolname, array_agg(g.rolname::text) FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member "
            "JOIN pg_roles g ON g.oid = a.roleid GROUP BY m.rolname").fetchall())
    assert "pg_monitor" in members[USERS["monitoring"]]
    assert "pg_read_all_data" in members[USERS["backup"]]
    assert "pg_read_all_data" not in members.get(USERS["grafana"], [])
    with pg(USERS["monitoring"], dbname=DB) as conn:
        assert conn.execute("SELECT count(*) >= 0 FROM pg_stat_statements").fetchone() == (True,)
    with pg(USERS["backup"], dbname=DB) as conn:
        assert conn.execute("SELECT count(*) FROM dt_probe").fetchone()[0] >= 1
    # Grafana: through PgBouncer, writes nothing and reads no table.
    with connect(USERS["grafana"]) as conn:
        for sql in ("SELECT count(*) FROM dt_probe", "INSERT INTO dt_probe VALUES (2, 'grafana must not write')",
                    "CREATE TABLE dt_grafana (id int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def test_grafana_gets_aggregates_and_no_secret():
    """Grafana's user runs the dashboard functions (counts of posts) and is refused every table of
    Mattermost's, the secrets first: sessions, access tokens, password hashes."""
    now_ms = int(time.time() * 1000)
    with connect(USERS["mattermost"]) as conn:  # Mattermost's tables, the way Mattermost creates them
        conn.execute("CREATE TABLE IF NOT EXISTS posts (id varchar(26) PRIMARY KEY, createat bigint, deleteat bigint, "
                     "message text)")
        conn.execute("CREATE TABLE IF NOT EXISTS sessions (id varchar(26) PRIMARY KEY, token varchar(26))")
        conn.execute("CREATE TABLE IF NOT EXISTS useraccesstokens (id varchar(26) PRIMARY KEY, token varchar(26))")
        conn.execute("CREATE TABLE IF NOT EXISTS users (id varchar(26) PRIMARY KEY, username text, password text)")
        conn.execute("INSERT INTO posts VALUES ('dtgrafana1', %s, 0, 'hello') ON CONFLICT (id) DO NOTHING", (now_ms,))
    with connect(USERS["grafana"]) as conn:
        for sql in ("SELECT token FROM sessions", "SELECT token FROM useraccesstokens", "SELECT password FROM users",
                    "SELECT username FROM users", "SELECT message FROM posts"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        rows = conn.execute("SELECT \"time\", posts FROM mmops_dashboards.posts_per_hour(%s, %s)",
                            (now_ms - 3_600_000, now_ms + 60_000)).fetchall()
        assert sum(count for _hour, count in rows) >= 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor can it add functions of its own there
            conn.execute("CREATE FUNCTION mmops_dashboards.x() RETURNS int LANGUAGE sql AS 'SELECT 1'")


# --------------------------------------------------------------------------- 2. limits
def test_client_limit_is_enforced_and_postgres_stays_within_max_connections():
    limit = EXPECTED["pgbouncer"]["max_client_conn"]
    max_connections = EXPECTED["postgres"]["max_connections"]
    max_db = EXPECTED["pgbouncer"]["max_db_connections"]
    clients, refusal, peak = [], None, {"all": 0, "mattermost": 0}
    stop = threading.Event()

    def sample():
        with pg() as conn:
            while not stop.is_set():
                total, mm = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE usename = %s) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend'", (USERS["mattermost"],)).fetchone()
                peak["all"], peak["mattermost"] = max(peak["all"], total), max(peak["mattermost"], mm)
                time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deadline = time.monotonic() + 90
    try:
        for _ in range(limit + 10):  # bounded: a few more than the limit
            assert time.monotonic() < deadline, "opening the client connections took too long"
            try:
                clients.append(connect(USERS["mattermost"], timeout=5))
            except psycopg.OperationalError as err:
                refusal = str(err)
                break
        # Keep every client busy at once: the server side must stay within the pool.
        busy = clients[: min(len(clients), 3 * max_db)]
        threads = [threading.Thread(target=c.execute, args=("SELECT pg_sleep(0.3)",)) for c in busy]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for c in clients:
            c.close()
        stop.set()
        sampler.join(timeout=10)
    assert refusal is not None, f"PgBouncer accepted {len(clients)} clients, max_client_conn is {limit}"
    assert "max_client_conn" in refusal or "no more connections" in refusal, refusal
    # The console, the health check and the sampler's neighbours may hold a few slots.
    assert limit - 5 <= len(clients) <= limit
    assert peak["mattermost"] <= max_db, peak
    assert peak["all"] <= max_connections, peak
    assert peak["mattermost"] > 0, "the busy clients never reached PostgreSQL"


# --------------------------------------------------------------------------- 3. exposure and logins
def host_addresses():
    addresses = os.environ.get("DT_HOST_ADDRESSES", "127.0.0.1").split()
    assert addresses
    return addresses


@pytest.mark.parametrize("port", [PG_PORT, PGB_PORT])
def test_ports_not_published_on_host_addresses(port):
    for address in host_addresses():
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


def test_wrong_password_fails():
    for login in (lambda: connect(USERS["mattermost"], password="wrong-password-123"),
                  lambda: pg(USERS["mattermost"], dbname=DB, password="wrong-password-123"),
                  lambda: connect(USERS["pgbouncer_stats"], dbname="pgbouncer", password="wrong-password-123")):
        with pytest.raises(psycopg.OperationalError):
            login().close()


@pytest.mark.parametrize("user,dbname,via_pgbouncer,allowed", [
    ("mattermost", DB, True, True),
    ("grafana", DB, True, True),
    ("pgbouncer_stats", "pgbouncer", True, True),
    ("postgres", DB, True, False),          # not in userlist.txt
    ("backup", DB, True, False),
    ("monitoring", DB, True, False),
    ("pgbouncer_stats", DB, True, False),   # NOLOGIN in PostgreSQL
    ("mattermost", "pgbouncer", True, False),  # not an admin/stats user
    ("postgres", "postgres", False, True),  # the host (network gateway) only
    ("monitoring", "postgres", False, True),
    ("backup", DB, False, True),
    ("mattermost", "postgres", False, False),  # Mattermost's database only
    ("grafana", "postgres", False, False),
    ("pgbouncer_stats", "postgres", False, False),
    ("nobody", DB, False, False),
])
def test_only_intended_users_log_in(user, dbname, via_pgbouncer, allowed):
    name = USERS.get(user, user)
    login = (lambda: connect(name, dbname=dbname)) if via_pgbouncer else (lambda: pg(name, dbname=dbname))
    if allowed:
        with login() as conn:
            probe = "SHOW VERSION" if dbname == "pgbouncer" else "SELECT 1"
            assert conn.execute(probe).fetchone()
    else:
        with pytest.raises(psycopg.OperationalError):
            login().close()


# --------------------------------------------------------------------------- 5. bad input
def test_rejected_plan_value_fails_before_any_container_change():
    before = container_state()
    rc, output, recap = converge({"stack_plan_overrides": {"pgbouncer": {"max_client_conn": 5}}})
    assert rc != 0 and recap["failed"] == 1 and recap["changed"] == 0
    assert "client_conn_capacity" in output and "max_client_conn 5" in output, output[-3000:]
    assert container_state() == before


@pytest.mark.parametrize("extra_vars,message", [
    ({"pgbouncer_default_pool_size": 3},
     "pgbouncer_default_pool_size was removed: set stack_plan_overrides: {pgbouncer: {default_pool_size: N}}"),
    ({"postgres_settings": {"max_connections": 500}},
     "postgres_settings.max_connections sets a planned value: set stack_plan_overrides: "
     "{postgres: {max_connections: N}} instead"),
    ({"pgbouncer_settings": {"max_db_connections": 0}},
     "pgbouncer_settings.max_db_connections sets a planned value: set stack_plan_overrides: "
     "{pgbouncer: {max_db_connections: N}} instead"),
], ids=["removed-variable", "postgres-settings", "pgbouncer-settings"])
def test_bypassing_the_plan_fails_before_any_container_change(extra_vars, message):
    before = container_state()
    rc, output, recap = converge(extra_vars)
    assert rc != 0 and recap["failed"] == 1 and recap["changed"] == 0
    assert message in " ".join(output.split()), output[-3000:]
    assert container_state() == before


@pytest.mark.parametrize("variable,value", [
    ("postgres_mattermost_password", 'Sup3r"secret pass'),
    ("pgbouncer_stats_password", "stats@host/secret#1"),
])
def test_unsafe_password_fails_before_any_container_change(variable, value):
    before = container_state()
    rc, output, recap = converge({variable: value})
    assert rc != 0 and recap["failed"] == 1 and recap["changed"] == 0
    assert f"{variable}: use at least 12 characters" in output, output[-3000:]
    assert value not in output
    assert container_state() == before


# --------------------------------------------------------------------------- 4. converge again
def test_second_converge_changes_nothing():
    rc, output, recap = converge()
    assert rc == 0 and recap["failed"] == 0, output[-3000:]
    assert recap["changed"] == 0, [line for line in output.splitlines() if line.startswith("changed:")]


def test_pool_change_reloads_without_dropping_sessions():
    old = EXPECTED["pgbouncer"]["default_pool_size"]
    new = old - 1 if old - 1 >= EXPECTED["pgbouncer"]["min_pool_size"] else old + 1
    before = container_state()
    with connect(USERS["mattermost"]) as session:
        assert session.execute("SELECT 1").fetchone() == (1,)
        rc, output, recap = converge({"stack_plan_overrides": {"pgbouncer": {"default_pool_size": new}}})
        assert rc == 0 and recap["failed"] == 0, output[-3000:]
        assert "RUNNING HANDLER [mattermost_ops.stack.pgbouncer : Reload PgBouncer]" in output
        # The session opened before the reload still works.
        assert session.execute("SELECT current_user").fetchone() == (USERS["mattermost"],)
    assert pgbouncer_config()["default_pool_size"] == str(new)
    assert container_state() == before, "PgBouncer or PostgreSQL was restarted; a reload was expected"


# --------------------------------------------------------------------------- 5. faults
def test_postgres_restart_costs_seconds_not_pgbouncers_login_retry():
    """A PostgreSQL restart under a polling client: PgBouncer's first login fails while PostgreSQL starts up;
    with server_login_retry 1 the client gets answers again within seconds (PgBouncer's default of 15 s kept
    failing requests for 15 s after a 0.5 s restart)."""
    assert pgbouncer_config()["server_login_retry"] == "1"
    with connect(USERS["mattermost"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)  # a server connection exists before the restart
    subprocess.run(DOCKER + ["restart", "-t", "10", EXPECTED["postgres_container"]], check=True, timeout=60,
                   capture_output=True)
    restarted, failures = time.monotonic(), []
    while time.monotonic() - restarted < 30:
        try:
            with connect(USERS["mattermost"], timeout=2) as conn:
                if conn.execute("SELECT 1").fetchone() == (1,):
                    break
        except psycopg.Error as exc:
            failures.append(str(exc).strip().splitlines()[0])
            time.sleep(0.2)
    outage = time.monotonic() - restarted
    assert outage < 5, f"answers again only after {outage:.1f} s; errors: {sorted(set(failures))}"
