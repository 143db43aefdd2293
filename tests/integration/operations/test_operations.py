"""Checks of the backup and archive roles and of playbooks/backup.yml and playbooks/restore.yml on a
deployed stack (PostgreSQL, PgBouncer, the Mattermost test double, Nginx), independent of how it was
deployed.

Everything comes from the environment (run.sh sets it):
  OPS_URL           Nginx as users reach it (default http://127.0.0.1:18473)
  OPS_EXPECTED      JSON with names and paths (default /tmp/mmops-ops/ops-expected.json, from play.yml)
  OPS_SECRETS_DIR   directory with one file per secret (default /tmp/mmops-ops/secrets)
  OPS_CONVERGE      command that converges play.yml (idempotence, bad input)
  OPS_PLAYBOOK      ansible-playbook command with the test variables, for playbooks/backup.yml and restore.yml
  OPS_ARCHIVE_PLAY  command that runs archive.yml (the archive role alone)
  OPS_REPORT        file the measured numbers are appended to (default /tmp/ops-report.txt)
Traffic goes only to loopback and to the stack's own containers; every loop is bounded; the tmpfs
of the out-of-space check is unmounted again.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import harness
import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[3]
RUN_SH = "tests/integration/operations/run.sh"
EXPECTED_FILE = harness.require_deployment(os.environ.get("OPS_EXPECTED", "/tmp/mmops-ops/ops-expected.json"), RUN_SH)
EXPECTED = json.loads(EXPECTED_FILE.read_text())
URL = os.environ.get("OPS_URL", "http://127.0.0.1:18473").rstrip("/")
SECRETS_DIR = Path(os.environ.get("OPS_SECRETS_DIR", "/tmp/mmops-ops/secrets"))
CONVERGE = harness.require_env("OPS_CONVERGE", RUN_SH, split=True)
PLAYBOOK = harness.require_env("OPS_PLAYBOOK", RUN_SH, split=True)
ARCHIVE_PLAY = harness.require_env("OPS_ARCHIVE_PLAY", RUN_SH, split=True)
REPORT = Path(os.environ.get("OPS_REPORT", "/tmp/ops-report.txt"))
NETWORK = EXPECTED["network"]
DB = EXPECTED["database"]
REPLICAS = EXPECTED["replicas"]
MM_DIR = Path(EXPECTED["stack_mattermost_dir"])
BACKUP_DIR = Path(EXPECTED["backup_dir"])
BACKUP = EXPECTED["backup_script"]
RESTORE = EXPECTED["restore_script"]
ARCHIVE = EXPECTED["archive_script"]
CONF = Path(EXPECTED["backup_config"])
METRICS = Path(EXPECTED["textfile_dir"]) / "mattermost_backup.prom"
NAME_RE = re.compile(r"^mattermost-\d{8}T\d{6}Z(-[a-z][a-z0-9-]{0,31})?$")  # nightly or labelled


# --------------------------------------------------------------------------- helpers
def report(key, value):
    line = f"{key}: {value}"
    print(line)
    with REPORT.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def run(*cmd, timeout=300, check=False, **kwargs):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=check,
                          **kwargs)


def docker(*args, timeout=60):
    return run("docker", *args, timeout=timeout, check=True).stdout


def inspect(name):
    return json.loads(docker("inspect", name))[0]


def address(name):
    return inspect(name)["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]


def secret(name):
    return (SECRETS_DIR / name).read_text(encoding="utf-8")


def pg(user="postgres", dbname=DB, via_pgbouncer=False):
    host = address(EXPECTED["pgbouncer_container" if via_pgbouncer else "postgres_container"])
    port = EXPECTED["stack_pgbouncer_port"] if via_pgbouncer else 5432
    password = secret({"postgres": "postgres_superuser_password",
                       EXPECTED["mattermost_user"]: "postgres_mattermost_password"}[user])
    return psycopg.connect(host=host, port=port, dbname=dbname, user=user, password=password, connect_timeout=10,
                           autocommit=True, prepare_threshold=None)


def snapshot():
    """Row count and an md5 of the content of every table of the Mattermost database."""
    with pg() as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").fetchall()]
        return {t: conn.execute(f'SELECT count(*), md5(string_agg(t::text, \'|\' ORDER BY t::text)) FROM "{t}" t')
                .fetchone() for t in tables}


def posts_checksum():
    with pg() as conn:
        return conn.execute("SELECT count(*), md5(string_agg(id || ':' || createat || ':' || message, ',' ORDER BY id)) "
                            "FROM posts").fetchone()


def api(method, path, body=None, token=None, timeout=10):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(URL + path, data=json.dumps(body).encode() if body is not None else None,
                                     method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read() or b"null")


def ansible(cmd, *extra, timeout=600):
    proc = run(*cmd, *extra, timeout=timeout, cwd=ROOT,
               env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    output = proc.stdout + proc.stderr
    recap = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    counts = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, recap.groups()))) if recap else {}
    return proc.returncode, output, counts


def playbook(name, *extra, timeout=600):
    return ansible(PLAYBOOK + [str(ROOT / "playbooks" / name)], *extra, timeout=timeout)


def metrics():
    values = {}
    for line in METRICS.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split()
            values[key] = float(value)
    return values


def backups(directory=BACKUP_DIR):
    return sorted(p.name for p in directory.iterdir() if NAME_RE.match(p.name))


def config_copy(tmp_path, **changes):
    """A copy of the backup configuration with some settings changed (e.g. BACKUP_DIR)."""
    text = CONF.read_text()
    for key, value in changes.items():
        text, count = re.subn(rf"^{key}=.*$", f"{key}={shlex.quote(str(value))}", text, flags=re.M)
        assert count == 1, key
    path = tmp_path / "backup.conf"
    path.write_text(text)
    path.chmod(0o600)
    return path


def container_state():
    names = REPLICAS + [EXPECTED["postgres_container"], EXPECTED["pgbouncer_container"], EXPECTED["nginx_container"]]
    return {name: inspect(name)["State"]["StartedAt"] for name in names}


def file_manifest():
    """sha256, owner and mode of every file under data, config and the replicas' plugin directories."""
    manifest = {}
    roots = [MM_DIR / "data", MM_DIR / "config"] + sorted(MM_DIR.glob("replicas/*/plugins")) + sorted(
        MM_DIR.glob("replicas/*/client-plugins"))
    for root in roots:
        for path in sorted(root.rglob("*")):
            stat = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            manifest[str(path.relative_to(MM_DIR))] = (digest, stat.st_uid, stat.st_gid, oct(stat.st_mode))
    return manifest


def seed_through_app(posts=30, replies=10):
    suffix = uuid.uuid4().hex[:8]
    user, password = f"ops{suffix}", "Ops-Passw0rd-1"
    status, _, body = api("POST", "/api/v4/users", {"username": user, "email": f"{user}@example.com",
                                                    "password": password})
    assert status == 201, body
    status, headers, body = api("POST", "/api/v4/users/login", {"login_id": user, "password": password})
    assert status in (200, 201), body
    token = headers["Token"]
    status, _, team = api("POST", "/api/v4/teams", {"name": f"ops-{suffix}", "display_name": "Ops", "type": "O"},
                          token=token)
    assert status == 201, team
    status, _, channel = api("POST", "/api/v4/channels", {"team_id": team["id"], "name": f"ops-rt-{suffix}",
                                                          "display_name": "Round trip", "type": "O"}, token=token)
    assert status == 201, channel
    ids = []
    for i in range(posts):
        status, _, post = api("POST", "/api/v4/posts", {"channel_id": channel["id"], "message": f"round trip #{i}"},
                              token=token)
        assert status == 201, post
        ids.append(post["id"])
    for i in range(replies):
        status, _, post = api("POST", "/api/v4/posts", {"channel_id": channel["id"], "root_id": ids[i],
                                                        "message": f"reply {i}"}, token=token)
        assert status == 201, post
        ids.append(post["id"])
    return {"user": user, "password": password, "channel": channel["id"], "posts": ids}


def write_owned(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chown(path.parent, 2000, 2000)
    path.write_bytes(data)
    os.chown(path, 2000, 2000)
    path.chmod(0o640)


# --------------------------------------------------------------------------- 0. converge again, installed files
def test_second_converge_changes_nothing():
    rc, output, recap = ansible(CONVERGE)
    assert rc == 0 and recap["failed"] == 0, output[-3000:]
    changed, task = [], None
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        elif line.startswith("changed:"):
            changed.append(task)
    assert recap["changed"] == 0, changed


def test_installed_scripts_configuration_and_schedule():
    for script in (BACKUP, RESTORE, ARCHIVE):
        stat = os.stat(script)
        assert (stat.st_uid, oct(stat.st_mode & 0o777)) == (0, "0o750"), script
        assert run("bash", "-n", script).returncode == 0
        if shutil.which("shellcheck"):
            assert run("shellcheck", script).returncode == 0, run("shellcheck", script).stdout
    for conf in (CONF, Path(EXPECTED["archive_config"])):
        assert (conf.stat().st_uid, oct(conf.stat().st_mode & 0o777)) == (0, "0o640")
    assert oct(BACKUP_DIR.stat().st_mode & 0o777) == "0o700"
    assert oct(SECRETS_DIR.stat().st_mode & 0o777) == "0o700"
    backup_cron = Path(EXPECTED["backup_cron_file"]).read_text()
    archive_cron = Path(EXPECTED["archive_cron_file"]).read_text()
    assert re.search(rf"^0 3 \* \* \* root {re.escape(BACKUP)} --config {re.escape(str(CONF))} --quiet$",
                     backup_cron, re.M), backup_cron
    assert re.search(rf"^30 4 \* \* 0 root {re.escape(ARCHIVE)} --config ", archive_cron, re.M), archive_cron
    # No secret in any file the two roles or their scripts write.
    secrets = [p.read_text() for p in SECRETS_DIR.iterdir()]
    written = [CONF, Path(EXPECTED["archive_config"]), Path(EXPECTED["backup_cron_file"]),
               Path(EXPECTED["archive_cron_file"]), Path(BACKUP), Path(RESTORE), Path(ARCHIVE),
               *Path(EXPECTED["backup_log"]).parent.glob("*.log"), *METRICS.parent.iterdir(),
               *BACKUP_DIR.glob("*/backup.info"), *BACKUP_DIR.glob("*/SHA256SUMS")]
    for path in written:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets), f"a secret is in {path}"


# --------------------------------------------------------------------------- 1. round trip
def test_round_trip_through_backup_and_restore():
    seeded = seed_through_app()
    write_owned(MM_DIR / "data" / "ops-roundtrip" / "upload.bin", os.urandom(200_000))
    write_owned(MM_DIR / "config" / "ops-test.json", b'{"ops": true}\n')
    write_owned(MM_DIR / "replicas" / REPLICAS[0] / "plugins" / "ops.test" / "plugin.json", b'{"id": "ops.test"}\n')
    before, posts_before, files_before = snapshot(), posts_checksum(), file_manifest()
    assert posts_before[0] >= 40

    # A labelled backup, as before an upgrade: made, verified and restored like any other.
    started = time.monotonic()
    rc, output, _ = playbook("backup.yml", "-e", "backup_label=pre-upgrade")
    assert rc == 0, output[-3000:]
    name = backups()[-1]
    assert name.endswith("Z-pre-upgrade"), backups()
    assert f"backup {name} complete" in " ".join(output.split()), output[-3000:]
    report("round trip: backup (playbooks/backup.yml, incl. Ansible)", f"{time.monotonic() - started:.1f} s")
    directory = BACKUP_DIR / name
    assert sorted(p.name for p in directory.iterdir()) == ["SHA256SUMS", "backup.info", "files.tar.gz",
                                                           "mattermost.dump"]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in directory.iterdir())
    assert run("sha256sum", "--check", "--strict", "SHA256SUMS", cwd=directory).returncode == 0
    offsite = Path(EXPECTED["rsync_target"]) / name
    assert run("sha256sum", "--check", "--strict", "SHA256SUMS", cwd=offsite).returncode == 0
    values = metrics()
    assert values["mattermost_backup_last_exit_status"] == 0
    assert abs(values["mattermost_backup_last_success_timestamp_seconds"] - time.time()) < 300
    assert values["mattermost_backup_last_size_bytes"] == int(run("du", "-sb", directory).stdout.split()[0])
    assert oct(METRICS.stat().st_mode & 0o777) == "0o644"
    report("round trip: backup size / duration (metrics)",
           f"{int(values['mattermost_backup_last_size_bytes'])} bytes / "
           f"{int(values['mattermost_backup_last_duration_seconds'])} s")

    # Lose data: every post, a whole table, the seeded user, uploaded files and a plugin; add a stray file.
    with pg() as conn:
        conn.execute("DELETE FROM posts")
        conn.execute("DROP TABLE reactions")
        conn.execute("DELETE FROM users WHERE username = %s", (seeded["user"],))
    shutil.rmtree(MM_DIR / "data" / "ops-roundtrip")
    shutil.rmtree(MM_DIR / "replicas" / REPLICAS[0] / "plugins" / "ops.test")
    write_owned(MM_DIR / "data" / "ops-stray.bin", b"written after the backup")
    assert snapshot() != before and file_manifest() != files_before
    state = container_state()

    started = time.monotonic()
    rc, output, _ = playbook("restore.yml", "-e", f"restore_backup={name}", "-e", "restore_confirm=yes")
    assert rc == 0, output[-4000:]
    report("round trip: restore (playbooks/restore.yml, incl. Ansible)", f"{time.monotonic() - started:.1f} s")
    after = snapshot()
    assert after.keys() == before.keys()
    assert {t: v for t, v in after.items() if v != before[t]} == {}, "tables differ after the restore"
    assert posts_checksum() == posts_before
    assert file_manifest() == files_before
    # The replicas were restarted and serve the restored data through Nginx.
    new_state = container_state()
    assert all(new_state[r] != state[r] for r in REPLICAS)
    assert all(inspect(r)["State"]["Running"] for r in REPLICAS)
    status, headers, _ = api("POST", "/api/v4/users/login", {"login_id": seeded["user"], "password": seeded["password"]})
    assert status in (200, 201)
    status, _, body = api("GET", f"/api/v4/channels/{seeded['channel']}/posts?per_page=200", token=headers["Token"])
    assert status == 200 and set(seeded["posts"]) <= set(body["order"])
    # The previous database and files are kept for a rollback; no restore is left "in progress".
    with pg(dbname="postgres") as conn:
        kept = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                           (f"{DB}_before_restore_%",)).fetchall()]
    assert kept, "the previous database was not kept"
    assert list(MM_DIR.glob(".before-restore-*/data/ops-stray.bin"))
    assert not (BACKUP_DIR / ".restore-in-progress").exists()
    assert "replicas healthy" in output and "through Nginx: {" in " ".join(output.split())


def test_password_never_on_a_command_line():
    password = secret("postgres_backup_password").encode()
    proc = subprocess.Popen([BACKUP, "--config", str(CONF), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen, scans, deadline = [], 0, time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        scans += 1
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if password in cmdline:
                    seen.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert scans > 3
    assert not seen, "the password appeared on a command line"


def test_runs_never_overlap():
    lock = EXPECTED["backup_lock"]
    before = METRICS.read_text()
    holder = subprocess.Popen(["flock", lock, "sleep", "30"], start_new_session=True)
    try:
        time.sleep(1)
        started = time.monotonic()
        result = run(BACKUP, "--config", CONF, timeout=60)
        assert result.returncode == 75, result.stderr
        assert "holds" in result.stderr
        assert time.monotonic() - started < 15
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock and the sleep that inherited the lock
        holder.wait()
    assert METRICS.read_text() == before, "a run that did not get the lock must not report"


# --------------------------------------------------------------------------- 2. out of space
def test_backup_into_a_full_directory_fails_cleanly(tmp_path):
    small = Path("/tmp/mmops-ops/small")
    small.mkdir(exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", small, check=True)
    big = MM_DIR / "data" / "ops-big.bin"
    try:
        conf = config_copy(tmp_path, BACKUP_DIR=small, RSYNC_TARGET="")
        first = run(BACKUP, "--config", conf)
        assert first.returncode == 0, first.stderr
        older = backups(small)
        assert len(older) == 1
        success = metrics()["mattermost_backup_last_success_timestamp_seconds"]

        write_owned(big, os.urandom(3 * 1024 * 1024))  # incompressible: the archive cannot fit
        time.sleep(1.1)
        result = run(BACKUP, "--config", conf)
        assert result.returncode not in (0, 75), result.stderr
        assert "No space left on device" in result.stderr or "no space left" in result.stderr.lower()
        assert "backup FAILED" in result.stderr
        values = metrics()
        assert values["mattermost_backup_last_exit_status"] != 0
        assert values["mattermost_backup_last_success_timestamp_seconds"] == success
        # Nothing that looks like a backup, no work directory left, the older backup intact.
        assert sorted(p.name for p in small.iterdir()) == older
        log = Path(EXPECTED["backup_log"]).read_text().splitlines()
        assert "backup FAILED" in log[-1] and any("No space left on device" in line for line in log[-4:])
        assert run(RESTORE, "--config", conf, "verify", older[0]).returncode == 0
    finally:
        big.unlink(missing_ok=True)
        run("umount", small)
    # The next run succeeds again and reports it.
    result = run(BACKUP, "--config", CONF, "--quiet")
    assert result.returncode == 0, result.stderr
    assert metrics()["mattermost_backup_last_exit_status"] == 0


def old_backups(directory, days):
    """Complete-looking backups at 03:00 UTC of each of the last DAYS days."""
    today = datetime.now(timezone.utc).replace(hour=3, minute=0, second=0, microsecond=0)
    names = [f"mattermost-{(today - timedelta(days=k)):%Y%m%dT%H%M%SZ}" for k in range(1, days + 1)]
    for name in names:
        (directory / name).mkdir()
        (directory / name / "SHA256SUMS").write_text("")
    return names


def test_a_failed_off_host_copy_keeps_the_backup_prunes_and_reports_it(tmp_path):
    """The rsync target is unreachable: the local backup is complete, counts as the last success, retention
    still runs, the off-host metric and exit status 3 say what failed (issue 13)."""
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    old = old_backups(directory, 6)
    conf = config_copy(tmp_path, BACKUP_DIR=directory, RSYNC_TARGET=tmp_path / "no-such-dir" / "offsite",
                       KEEP_DAILY=2, KEEP_WEEKLY=0)
    started = time.time()
    result = run(BACKUP, "--config", conf)
    assert result.returncode == 3, result.stderr
    [new] = sorted(set(backups(directory)) - set(old))
    assert run("sha256sum", "--check", "--strict", "SHA256SUMS", cwd=directory / new).returncode == 0
    assert backups(directory) == sorted([old[0], new]), "retention did not run after the failed copy"
    assert f"the copy to {tmp_path / 'no-such-dir' / 'offsite'} failed" in result.stderr
    assert f"backup {new} is complete and kept locally" in result.stderr
    assert "no new backup was kept" not in result.stderr
    values = metrics()
    assert values["mattermost_backup_last_exit_status"] == 3
    assert values["mattermost_backup_last_success_timestamp_seconds"] >= int(started)
    assert values["mattermost_backup_offhost_last_exit_status"] == 1
    # The next run with a reachable target clears the off-host failure.
    result = run(BACKUP, "--config", CONF, "--quiet")
    assert result.returncode == 0, result.stderr
    values = metrics()
    assert values["mattermost_backup_offhost_last_exit_status"] == 0
    assert values["mattermost_backup_offhost_last_success_timestamp_seconds"] >= int(started)


def test_too_little_free_space_stops_the_run_before_it_writes(tmp_path):
    """The last backup took more than BACKUP_DIR has free: the run refuses to start and says why."""
    directory, textfile = tmp_path / "backups", tmp_path / "textfile"
    directory.mkdir(mode=0o700)
    textfile.mkdir()
    (textfile / "mattermost_backup.prom").write_text("mattermost_backup_last_size_bytes 1e+15\n")
    conf = config_copy(tmp_path, BACKUP_DIR=directory, TEXTFILE_DIR=textfile, RSYNC_TARGET="")
    result = run(BACKUP, "--config", conf)
    assert result.returncode == 1, result.stderr
    assert re.search(rf"not starting: \d+ bytes free in {re.escape(str(directory))}, the last backup needed about "
                     r"1100000000000000", result.stderr), result.stderr
    assert list(directory.iterdir()) == []
    assert "mattermost_backup_last_exit_status 1" in (textfile / "mattermost_backup.prom").read_text()


def test_a_run_that_hangs_is_stopped_by_the_timeout_and_cleans_up(tmp_path):
    """pg_dump waits for a lock that a session holds (a migration, say): after TIMEOUT the run is stopped,
    its work directory removed, nothing kept, exit status 124."""
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    conf = config_copy(tmp_path, BACKUP_DIR=directory, RSYNC_TARGET="", TIMEOUT=5)
    with pg() as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = run(BACKUP, "--config", conf, timeout=120)
        elapsed = time.monotonic() - started
        holder.execute("ROLLBACK")
    assert result.returncode == 124, result.stderr
    assert 5 <= elapsed < 30, elapsed
    assert list(directory.iterdir()) == [], "a work directory or a backup was left behind"
    assert "stopped by SIGTERM: the run reached TIMEOUT=5 s" in result.stderr
    assert "backup FAILED" in result.stderr


# --------------------------------------------------------------------------- 3. retention
def expected_retention(names, keep_daily, keep_weekly, weekly_day=7):
    """The retention rule, written independently: the newest backup of each of the newest
    keep_daily days, and of each of the newest keep_weekly days that fell on weekly_day (UTC)."""
    newest_per_day = {}
    for name in sorted(names, reverse=True):
        newest_per_day.setdefault(name[11:19], name)
    days = sorted(newest_per_day, reverse=True)
    weekly_days = [d for d in days if datetime.strptime(d, "%Y%m%d").isoweekday() == weekly_day]
    return {newest_per_day[d] for d in days[:keep_daily]} | {newest_per_day[d] for d in weekly_days[:keep_weekly]}


def test_retention_keeps_exactly_the_configured_backups(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    today = datetime.now(timezone.utc).replace(hour=3, minute=0, second=0, microsecond=0)
    fake = [f"mattermost-{(today - timedelta(days=k)):%Y%m%dT%H%M%SZ}" for k in range(1, 41)]
    fake += [f"mattermost-{(today - timedelta(days=1)).replace(hour=12):%Y%m%dT%H%M%SZ}",  # later the same day
             f"mattermost-{today.replace(hour=0, second=1):%Y%m%dT%H%M%SZ}"]  # earlier today
    for name in fake:
        (directory / name).mkdir()
        (directory / name / "SHA256SUMS").write_text("")
    labelled = [f"mattermost-{(today - timedelta(days=30)):%Y%m%dT%H%M%SZ}-pre-upgrade",
                f"mattermost-{(today - timedelta(days=1)):%Y%m%dT%H%M%SZ}-manual"]  # never rotated
    for name in labelled:
        (directory / name).mkdir()
    (directory / ".partial-mattermost-20000101T000000Z").mkdir()  # left by a killed run
    (directory / "notes").mkdir()  # not a backup: never touched
    conf = config_copy(tmp_path, BACKUP_DIR=directory, RSYNC_TARGET="", KEEP_DAILY=3, KEEP_WEEKLY=2)
    result = run(BACKUP, "--config", conf)
    assert result.returncode == 0, result.stderr
    assert set(labelled) <= set(backups(directory)), "the retention removed a labelled backup"
    kept = [n for n in backups(directory) if n not in labelled]
    new = sorted(set(kept) - set(fake))
    assert len(new) == 1
    expected = expected_retention(fake + new, 3, 2)
    assert set(kept) == expected
    sundays = [n for n in kept if datetime.strptime(n[11:19], "%Y%m%d").isoweekday() == 7]
    assert len({n[11:19] for n in kept if n not in sundays}) <= 3
    assert 3 <= len(kept) <= 5
    assert len(sundays) >= 2
    assert f"retention: kept 3 daily and 2 weekly backup(s), {len(kept)} in all" in result.stdout
    assert (directory / "notes").is_dir()
    assert not list(directory.glob(".partial-*"))
    report("retention (keep_daily 3, keep_weekly 2, 42 fake + 1 new, 2 labelled kept)",
           f"kept {len(kept)}: {', '.join(kept)}")


def test_a_bad_label_is_refused_before_anything_is_written(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o700)
    conf = config_copy(tmp_path, BACKUP_DIR=directory, RSYNC_TARGET="")
    result = run(BACKUP, "--config", conf, "--label", "../Pre Upgrade")
    assert result.returncode == 64 and "is not a label" in result.stderr, result.stderr
    assert not list(directory.iterdir())
    rc, output, _ = playbook("backup.yml", "-e", "backup_label=Pre_Upgrade")
    assert rc != 0 and "Pre_Upgrade" in output and "is not a label: a-z first" in output, output[-3000:]
    assert "TASK [mattermost_ops.stack.backup : Run one backup now]" not in output


# --------------------------------------------------------------------------- 5. bad input
def test_restore_refuses_bad_input_before_touching_anything():
    good = backups()[-1]
    corrupt = "mattermost-20000101T000000Z"
    shutil.copytree(BACKUP_DIR / good, BACKUP_DIR / corrupt)
    dump = BACKUP_DIR / corrupt / "mattermost.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    dump.write_bytes(bytes(data))
    state, tables = container_state(), snapshot()
    cases = [
        (["-e", "restore_backup=mattermost-19990101T000000Z", "-e", "restore_confirm=yes"], "there is no backup"),
        (["-e", f"restore_backup={corrupt}", "-e", "restore_confirm=yes"], "checksums do not match"),
        (["-e", f"restore_backup={good}"], "-e restore_confirm=yes"),
        (["-e", "restore_backup=../../etc", "-e", "restore_confirm=yes"], "is not a backup name"),
    ]
    try:
        for extra, message in cases:
            rc, output, recap = playbook("restore.yml", *extra)
            assert rc != 0 and recap.get("failed") == 1, output[-3000:]
            assert message in output, output[-3000:]
            assert "Nothing was changed" in output
            assert recap.get("changed") == 0
            assert container_state() == state, extra
            assert snapshot() == tables, extra
            assert not (BACKUP_DIR / ".restore-in-progress").exists()
    finally:
        shutil.rmtree(BACKUP_DIR / corrupt)


@pytest.mark.parametrize("value", [0])
def test_archive_max_age_days_below_one_is_refused(value):
    rc, output, recap = ansible(CONVERGE, "-e", f"archive_max_age_days={value}")
    assert rc != 0 and recap["failed"] == 1 and recap["changed"] == 0, output[-3000:]
    assert f"archive_max_age_days={value}: use a whole number of days greater than 0" in output


def test_archive_script_refuses_zero_days_too(tmp_path):
    conf = tmp_path / "archive.conf"
    conf.write_text(re.sub(r"^MAX_AGE_DAYS=.*$", "MAX_AGE_DAYS=0", Path(EXPECTED["archive_config"]).read_text(),
                           flags=re.M))
    result = run(ARCHIVE, "--config", conf)
    assert result.returncode == 78 and "greater than 0" in result.stderr


# --------------------------------------------------------------------------- 4. archiving
TOTAL, OLD_DAYS, DAY_MS = 100_000, 800, 86_400_000


def is_old(i):
    return i % 10 == 0


def is_pinned(i):
    return i % 200 == 0


def moves(i):
    """Old, not pinned, and not the root of a thread that keeps a newer reply (roots i % 1000 == 10)."""
    return is_old(i) and not is_pinned(i) and i % 1000 != 10


def post_id(i):
    return f"opsarch{i:019d}"


SEED_SQL = f"""
CREATE TABLE IF NOT EXISTS threadmemberships (postid varchar(26), userid varchar(26), following boolean,
  lastviewed bigint, lastupdated bigint, unreadmentions bigint, PRIMARY KEY (postid, userid));
WITH s AS (SELECT i, (extract(epoch FROM now()) * 1000)::bigint AS now_ms FROM generate_series(1, {TOTAL}) AS i)
INSERT INTO posts (id, createat, updateat, editat, deleteat, ispinned, userid, channelid, rootid, originalid,
                   message, type, props, hashtags, filenames, fileids, hasreactions, remoteid)
SELECT 'opsarch' || lpad(i::text, 19, '0'),
       CASE WHEN i % 10 = 0 THEN now_ms - {OLD_DAYS}::bigint * {DAY_MS} - i
            ELSE now_ms - (i % 300)::bigint * {DAY_MS} - i END,
       now_ms, 0, 0, i % 200 = 0, 'opsuser0000000000000000000', 'opschannel0000000000000000',
       CASE WHEN i % 1000 = 11 THEN 'opsarch' || lpad((i - 1)::text, 19, '0')
            WHEN i % 1000 = 30 THEN 'opsarch' || lpad((i - 10)::text, 19, '0') ELSE '' END,
       '', 'seeded post ' || i, '', '{{}}', '', '[]', '[]', i % 7 = 0, ''
FROM s;
INSERT INTO reactions (userid, postid, emojiname, createat, updateat, deleteat, channelid)
SELECT 'opsuser0000000000000000000', 'opsarch' || lpad(i::text, 19, '0'), 'smile', 0, 0, 0, 'opschannel0000000000000000'
FROM generate_series(7, {TOTAL}, 7) AS i;
INSERT INTO fileinfo (id, creatorid, postid, channelid, createat, updateat, deleteat, path, name, size, mimetype)
SELECT 'opsfile' || lpad(i::text, 19, '0'), 'opsuser0000000000000000000', 'opsarch' || lpad(i::text, 19, '0'),
       'opschannel0000000000000000', 0, 0, 0, 'data/f' || i, 'f' || i, 1, 'text/plain'
FROM generate_series(13, {TOTAL}, 13) AS i;
INSERT INTO threads (postid, replycount, lastreplyat, participants, channelid, threaddeleteat)
SELECT 'opsarch' || lpad(i::text, 19, '0'), 1, 0, '[]', 'opschannel0000000000000000', 0
FROM generate_series(1, {TOTAL}) AS i WHERE i % 1000 IN (10, 20);
INSERT INTO threadmemberships (postid, userid, following, lastviewed, lastupdated, unreadmentions)
SELECT 'opsarch' || lpad(i::text, 19, '0'), 'opsuser0000000000000000000', true, 0, 0, 0
FROM generate_series(1, {TOTAL}) AS i WHERE i % 1000 IN (10, 20);
ANALYZE posts; ANALYZE reactions; ANALYZE fileinfo; ANALYZE threads; ANALYZE threadmemberships;
"""


def count(conn, sql):
    return conn.execute(sql).fetchone()[0]


class InsertProbe(threading.Thread):
    """Inserts a post every ~20 ms through PgBouncer, as Mattermost would, and records each insert's latency."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.latencies, self.errors = threading.Event(), [], []

    def run(self):
        with pg(EXPECTED["mattermost_user"], via_pgbouncer=True) as conn:
            n = 0
            while not self.stop.is_set() and n < 30_000:
                n += 1
                started, wall = time.monotonic(), time.time()
                try:
                    conn.execute("INSERT INTO posts (id, createat, updateat, editat, deleteat, ispinned, userid, "
                                 "channelid, rootid, originalid, message, type, props) VALUES (%s, "
                                 "(extract(epoch FROM now()) * 1000)::bigint, 0, 0, 0, false, %s, %s, '', '', "
                                 "'probe', '', '{}')", (f"opsprobe{n:018d}", "opsuser0000000000000000000",
                                                        "opschannel0000000000000000"))
                except psycopg.Error as err:
                    self.errors.append(str(err))
                self.latencies.append((wall, time.monotonic() - started))
                time.sleep(0.02)


def test_archive_moves_exactly_the_old_unpinned_posts_without_blocking_inserts():
    with pg(EXPECTED["mattermost_user"]) as conn:  # as Mattermost's role, which owns the tables
        conn.execute(SEED_SQL)
        before = {t: count(conn, f"SELECT count(*) FROM {t}") for t in
                  ("posts", "reactions", "fileinfo", "threads", "threadmemberships")}
    moving = [i for i in range(1, TOTAL + 1) if moves(i)]
    expect = {
        "posts": len(moving),
        "reactions": sum(1 for i in moving if i % 7 == 0),
        "fileinfo": sum(1 for i in moving if i % 13 == 0),
        "threads": sum(1 for i in moving if i % 1000 in (10, 20)),
        "threadmemberships": sum(1 for i in moving if i % 1000 in (10, 20)),
    }
    assert expect["posts"] == 9400 and expect["threads"] == 100

    # Dry run through the role: counts, nothing moves, no table is created.
    rc, output, _ = ansible(ARCHIVE_PLAY, "-e", "archive_run_now=true", "-e", "archive_dry_run=true")
    assert rc == 0, output[-3000:]
    output = " ".join(output.split())
    assert f"would move posts={expect['posts']} fileinfo={expect['fileinfo']} reactions={expect['reactions']} " \
           f"threadmemberships={expect['threadmemberships']} threads={expect['threads']} kept_pinned=500 " \
           f"kept_thread_roots=100" in output, output[-3000:]
    with pg() as conn:
        assert count(conn, "SELECT count(*) FROM posts") == before["posts"]
        assert count(conn, "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_archive'") == 0

    # The real run through the role (archive_run_now; archive_dry_run back to false in the script's
    # configuration), with inserts going on all the while.
    probe = InsertProbe()
    probe.start()
    time.sleep(1)
    rc, output, recap = ansible(ARCHIVE_PLAY, "-e", "archive_run_now=true")
    time.sleep(0.5)
    probe.stop.set()
    probe.join(timeout=30)
    assert rc == 0 and recap["changed"] >= 1, output[-3000:]
    output = " ".join(output.split())
    summary = (f"moved posts={expect['posts']} fileinfo={expect['fileinfo']} reactions={expect['reactions']} "
               f"threadmemberships={expect['threadmemberships']} threads={expect['threads']} in ")
    assert summary in output, output[-3000:]
    batches, seconds = re.search(r"in (\d+) batch\(es\), (\d+) s", output).groups()
    report("archive: 100 000 posts, batch 1000, pause 0.1 s",
           f"moved {expect['posts']} posts (+ related rows) in {batches} batches, {seconds} s")
    # The archiving window from the script's own log (second resolution): its start and its summary.
    log = Path(EXPECTED["archive_log"]).read_text().splitlines()
    stamps = [datetime.strptime(line[:20], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
              for line in log if "info: run: posts created before" in line or "info: moved posts=" in line]
    begin, end = stamps[-2], stamps[-1] + 1
    during = sorted(lat for wall, lat in probe.latencies if begin <= wall <= end)
    outside = sorted(lat for wall, lat in probe.latencies if not begin <= wall <= end)

    def stats(values):
        return (f"{len(values)} inserts, worst {values[-1] * 1000:.0f} ms, "
                f"p99 {values[max(0, int(len(values) * 0.99) - 1)] * 1000:.0f} ms, "
                f"median {statistics.median(values) * 1000:.1f} ms")

    report("archive: inserts through PgBouncer every ~20 ms WHILE archiving", stats(during))
    report("archive: the same inserts before/after it (machine baseline)", stats(outside))
    assert not probe.errors, probe.errors[:3]
    assert len(during) > 20
    assert during[-1] < 1.0, f"an insert waited {during[-1]:.3f} s during the archiving"

    with pg() as conn:
        for table, moved in expect.items():
            assert count(conn, f"SELECT count(*) FROM {table}_archive") == moved, table
        after_posts = count(conn, "SELECT count(*) FROM posts WHERE id LIKE 'opsarch%'")
        assert after_posts + expect["posts"] == TOTAL
        assert count(conn, "SELECT count(*) FROM reactions") == before["reactions"] - expect["reactions"]
        # Exactly the expected ids moved: none of the kept ones is in the archive, none of the moved ones left.
        wrong = count(conn, "SELECT count(*) FROM posts_archive WHERE NOT (substr(id, 8)::int % 10 = 0 "
                            "AND substr(id, 8)::int % 200 <> 0 AND substr(id, 8)::int % 1000 <> 10)")
        assert wrong == 0
        assert count(conn, "SELECT count(*) FROM posts WHERE id LIKE 'opsarch%' AND substr(id, 8)::int % 10 = 0 "
                           "AND substr(id, 8)::int % 200 <> 0 AND substr(id, 8)::int % 1000 <> 10") == 0
        assert count(conn, "SELECT count(*) FROM posts WHERE id LIKE 'opsarch%' AND ispinned") == 500
        # Thread roots with a newer reply stay; so do their threads rows; every moved reply's root moved too.
        assert count(conn, "SELECT count(*) FROM threads WHERE postid LIKE 'opsarch%'") == 100
        assert count(conn, "SELECT count(*) FROM posts_archive a WHERE a.rootid <> '' AND NOT EXISTS "
                           "(SELECT 1 FROM posts_archive r WHERE r.id = a.rootid)") == 0
        # Same columns and primary key as the source; owned by Mattermost's role.
        assert conn.execute("SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute WHERE attrelid = "
                            "'posts'::regclass AND attnum > 0 AND NOT attisdropped").fetchone() == conn.execute(
            "SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'posts_archive'::regclass "
            "AND attnum > 0 AND NOT attisdropped").fetchone()
        assert count(conn, "SELECT count(*) FROM pg_index WHERE indrelid = 'posts_archive'::regclass "
                           "AND indisprimary") == 1
        assert count(conn, "SELECT tableowner FROM pg_tables WHERE tablename = 'posts_archive'") == \
            EXPECTED["mattermost_user"]

    # A second run moves nothing.
    again = run(ARCHIVE, "--config", EXPECTED["archive_config"], timeout=300)
    assert again.returncode == 0, again.stderr
    assert "moved posts=0 " in again.stdout and "in 0 batch(es)" in again.stdout, again.stdout


def test_round_trip_of_the_archived_database_without_keeping_the_previous_copy():
    """Backup and restore of the database with 100 000 posts and the archive tables: the size and
    duration the job reports, the same content afterwards, and backup_restore_keep_previous=false."""
    result = run(BACKUP, "--config", CONF, "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    values = metrics()
    report("backup of the 100 000-post database (metrics)",
           f"{int(values['mattermost_backup_last_size_bytes'])} bytes in "
           f"{int(values['mattermost_backup_last_duration_seconds'])} s")
    name = backups()[-1]
    before = snapshot()
    assert "posts_archive" in before

    def previous_copies():
        with pg(dbname="postgres") as conn:
            databases = count(conn, f"SELECT count(*) FROM pg_database WHERE datname LIKE '{DB}_before_restore_%'")
        return databases, len(list(MM_DIR.glob(".before-restore-*")))

    kept = previous_copies()
    started = time.monotonic()
    rc, output, _ = playbook("restore.yml", "-e", f"restore_backup={name}", "-e", "restore_confirm=yes",
                             "-e", "backup_restore_keep_previous=false")
    assert rc == 0, output[-4000:]
    report("restore of the 100 000-post database (playbooks/restore.yml, incl. Ansible)",
           f"{time.monotonic() - started:.1f} s")
    assert snapshot() == before
    assert previous_copies() == kept, "the previous database or files were kept"
    assert "removed the previous database" in " ".join(output.split())
