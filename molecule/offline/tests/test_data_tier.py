"""Data tier in the 2 vCPU / 4 GB instance: PostgreSQL and PgBouncer carry the plan and only
the intended users get in. The client is psql in the postgres container, talking to PgBouncer
over the stack's Docker network, as Mattermost does."""
testinfra_hosts = ["ansible://all"]

VIA_PGBOUNCER = "host=pgbouncer port=6432 dbname=mattermost user=mmuser"


def test_query_as_mattermost_through_pgbouncer(psql, secret):
    rc, out, err = psql("postgres", VIA_PGBOUNCER, "SELECT current_user, 6 * 7", secret("postgres_mattermost_password"))
    assert rc == 0, err
    assert out == "mmuser|42"


def test_wrong_password_is_refused(psql):
    rc, _, err = psql("postgres", VIA_PGBOUNCER, "SELECT 1", "not-the-password")
    assert rc != 0
    assert "password authentication failed" in err or "SASL authentication failed" in err


def test_postgres_max_connections_equals_plan(psql, secret, plan):
    rc, out, err = psql("postgres", "host=127.0.0.1 dbname=postgres user=postgres", "SHOW max_connections",
                        secret("postgres_superuser_password"))
    assert rc == 0, err
    assert int(out) == plan["postgres"]["max_connections"]


def test_pgbouncer_config_equals_plan(psql, secret, plan):
    rc, out, err = psql("postgres", "host=pgbouncer port=6432 dbname=pgbouncer user=pgbouncer_stats", "SHOW CONFIG",
                        secret("pgbouncer_stats_password"))
    assert rc == 0, err
    config = {line.split("|")[0]: line.split("|")[1] for line in out.splitlines()}
    for key in ("pool_mode", "max_client_conn", "default_pool_size", "min_pool_size", "reserve_pool_size",
                "max_db_connections", "server_idle_timeout", "server_lifetime"):
        assert config[key] == str(plan["pgbouncer"][key]), key
    assert config["ignore_startup_parameters"] == "extra_float_digits"


def test_pgbouncer_pool_for_mattermost_exists(psql, secret):
    psql("postgres", VIA_PGBOUNCER, "SELECT 1", secret("postgres_mattermost_password"))
    rc, out, err = psql("postgres", "host=pgbouncer port=6432 dbname=pgbouncer user=pgbouncer_stats", "SHOW POOLS",
                        secret("pgbouncer_stats_password"))
    assert rc == 0, err
    assert any(line.startswith("mattermost|mmuser|") for line in out.splitlines()), out


def test_secrets_are_private(host):
    secrets = host.file("/etc/mattermost-ops/secrets")
    assert secrets.mode == 0o700
    for name in host.check_output("ls /etc/mattermost-ops/secrets").split():
        assert host.file(f"/etc/mattermost-ops/secrets/{name}").mode == 0o600, name
