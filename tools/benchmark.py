#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Side-by-side benchmark: the original lab's connection settings against the capacity plan's, on the
same stack, with the same k6 scenario, in one run; writes docs/benchmarks.md.

    .venv/bin/python tools/benchmark.py            # 100 VUs, 90 s per run
    .venv/bin/python tools/benchmark.py --quick    # 30 VUs, 30 s per run
    .venv/bin/python tools/benchmark.py --vus 60 --duration 60s [--keep] [--output docs/benchmarks.md]
    .venv/bin/python tools/benchmark.py --render-only results/benchmark-<timestamp>/benchmark.json

What it does, on this machine's Docker engine (containers, volume, network and /tmp directory named
lt-bench-*; Nginx on 127.0.0.1:18091; nothing else is touched):
  1. builds the lab images (tests/lab/build-images) and removes an earlier lt-bench stack;
  2. converges the stack fresh with tests/integration/loadtest/play.yml (timed), then again (timed:
     the no-op converge);
  3. run "plan": playbooks/loadtest.yml with the `benchmark` scenario against the stack as planned,
     sampling pg_stat_activity and PgBouncer's SHOW POOLS twice a second;
  4. converges the same play again with the original lab's connection settings (SEED below) as
     stack_plan_overrides and stack_plan_enforce=false: the roles deploy them (they break the capacity
     model, so the plan check only warns, as that documented switch is for);
  5. run "seed": the same scenario, the same sampling;
  6. writes the Markdown report and removes the stack (--keep leaves it, with the seed settings).
Every number in the report comes from this run. docs/benchmarks.md also holds the pool-size sweep of
tools/pool_sweep.py (which imports the helpers below); each tool rewrites only its own part of the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PLAY = ROOT / "tests" / "integration" / "loadtest" / "play.yml"
CLEANUP = ROOT / "tests" / "integration" / "loadtest" / "cleanup.sh"
LOADTEST = ROOT / "playbooks" / "loadtest.yml"
PREFIX = "lt-bench"
PORT = 18091
STACK_DIR = Path(f"/tmp/mmops-{PREFIX}")
URL = f"http://127.0.0.1:{PORT}"
NETWORK = f"{PREFIX}-mattermost"
POSTGRES, PGBOUNCER, NGINX = f"{PREFIX}-postgres", f"{PREFIX}-pgbouncer", f"{PREFIX}-nginx"
REPLICAS = [f"{PREFIX}-mattermost-{i}" for i in (1, 2, 3)]

# The original lab's connection settings as they were in force (shared/reference/seed-audit.md), as
# stack_plan_overrides: PgBouncer in session mode with a server pool of 50 and no reserve (PgBouncer's
# defaults for what the seed did not set), PostgreSQL's default max_connections of 100, and Mattermost's
# MaxOpenConns 30 / MaxIdleConns 10. Container CPU and memory limits stay as planned in both runs.
SEED = {
    "pgbouncer": {"pool_mode": "session", "max_client_conn": 200, "default_pool_size": 50, "min_pool_size": 0,
                  "reserve_pool_size": 0, "max_db_connections": 0, "query_wait_timeout": 120,
                  "server_idle_timeout": 600},
    "postgres": {"max_connections": 100},
    "mattermost": {"MaxOpenConns": 30, "MaxIdleConns": 10},
}
# The pool-size sweep's part of docs/benchmarks.md lies between these markers (see write_report).
SWEEP_BEGIN, SWEEP_END = "<!-- pool-sweep:begin -->", "<!-- pool-sweep:end -->"
PGBOUNCER_SHOWN = ("pool_mode", "max_client_conn", "default_pool_size", "min_pool_size", "reserve_pool_size",
                   "reserve_pool_timeout", "max_db_connections", "query_wait_timeout")


def log(msg):
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def env():
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
            "LT_PREFIX": PREFIX, "LT_HTTP_PORT": str(PORT), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}


def run(cmd, logfile=None, check=True, timeout=1800):
    """(rc, output, seconds) of a command; the output also goes to logfile."""
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=timeout, check=False)
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    if logfile:
        Path(logfile).write_text(f"$ {shlex.join(map(str, cmd))}\n{output}", encoding="utf-8")
    if check and proc.returncode != 0:
        sys.exit(f"command failed (exit {proc.returncode}): {shlex.join(map(str, cmd))}\n{output[-3000:]}")
    return proc.returncode, output, seconds


def recap(output):
    match = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()))) if match else {}


# ------------------------------------------------------------------------------------------ docker
def docker(*args, check=True, timeout=120):
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def inspect(name):
    return json.loads(docker("inspect", name))[0]


def address(name, network=NETWORK):
    return inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"]


def wait_healthy(name, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = inspect(name)["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(1)
    raise RuntimeError(f"{name} is not healthy after {timeout} s")


def replica_env(name):
    return dict(item.split("=", 1) for item in inspect(name)["Config"]["Env"])


# ------------------------------------------------------------------------------------------ databases
def secret(name):
    return (STACK_DIR / "secrets" / name).read_text(encoding="utf-8").strip()


def pg_connect():
    import psycopg  # pylint: disable=import-outside-toplevel
    return psycopg.connect(host=address(POSTGRES), port=5432, user="postgres", dbname="postgres",
                           password=secret("postgres_superuser_password"), autocommit=True, connect_timeout=5)


def pgbouncer_connect():
    import psycopg  # pylint: disable=import-outside-toplevel
    # The admin console speaks the simple query protocol only: client-side binding.
    return psycopg.connect(host=address(PGBOUNCER), port=6432, user="pgbouncer_stats", dbname="pgbouncer",
                           password=secret("pgbouncer_stats_password"), autocommit=True, connect_timeout=5,
                           cursor_factory=psycopg.ClientCursor)


def show(conn, command):
    cur = conn.cursor()
    cur.execute(command)
    names = [d.name for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def effective_settings():
    """The settings the running containers really use, read back from them."""
    with pg_connect() as pg:
        max_connections = pg.execute("SHOW max_connections").fetchone()[0]
    with pgbouncer_connect() as bouncer:
        config = {row["key"]: row["value"] for row in show(bouncer, "SHOW CONFIG")}
    replicas = {name: replica_env(name) for name in REPLICAS}
    conns = {(e["MM_SQLSETTINGS_MAXOPENCONNS"], e["MM_SQLSETTINGS_MAXIDLECONNS"]) for e in replicas.values()}
    if len(conns) != 1:
        raise RuntimeError(f"the replicas disagree on their pool settings: {conns}")
    (max_open, max_idle), = conns
    return {"postgres max_connections": max_connections,
            **{f"pgbouncer {k}": config.get(k, "?") for k in PGBOUNCER_SHOWN},
            "mattermost replicas": str(len(REPLICAS)), "mattermost MaxOpenConns": max_open,
            "mattermost MaxIdleConns": max_idle,
            "mattermost cpus / memory (each)": "%.2f / %d MB" % (
                inspect(REPLICAS[0])["HostConfig"]["NanoCpus"] / 1e9, inspect(REPLICAS[0])["HostConfig"]["Memory"] >> 20)}


def k6_running(marker):
    """Whether a k6 process whose command line contains `marker` runs."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"k6") and any(marker.encode() in arg for arg in cmdline):
                return True
    return False


class Sampler(threading.Thread):
    """Twice a second while k6 runs (a k6 process with `marker` in its command line; or while `active()`
    is true): PostgreSQL's connections (pg_stat_activity) and PgBouncer's pools (SHOW POOLS; with
    `database`, only the pools of that database)."""

    def __init__(self, marker, interval=0.5, active=None, database=None):
        super().__init__(daemon=True)
        self.marker, self.interval, self.stop, self.errors = marker, interval, threading.Event(), []
        self.active = active or (lambda: k6_running(self.marker))
        self.database = database
        self.samples = 0
        self.max = {"pg_all": 0, "pg_clients": 0, "pg_active": 0, "cl_waiting": 0, "cl_active": 0, "sv_total": 0,
                    "maxwait_ms": 0.0}

    def note(self, key, value):
        self.max[key] = max(self.max[key], value)

    def run(self):
        pg = bouncer = None
        while not self.stop.is_set():
            if not self.active():
                self.stop.wait(self.interval / 2)
                continue
            try:
                pg = pg or pg_connect()
                bouncer = bouncer or pgbouncer_connect()
                total, clients, active = pg.execute(
                    "SELECT count(*), count(*) FILTER (WHERE backend_type = 'client backend'),"
                    " count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active')"
                    " FROM pg_stat_activity").fetchone()
                # The sampler's own connection is one client backend (and active while it asks).
                self.note("pg_all", total)
                self.note("pg_clients", clients - 1)
                self.note("pg_active", active - 1)
                pools = [p for p in show(bouncer, "SHOW POOLS") if p["database"] != "pgbouncer"
                         and p["database"] == (self.database or p["database"])]
                self.note("cl_waiting", sum(int(p["cl_waiting"]) for p in pools))
                self.note("cl_active", sum(int(p["cl_active"]) for p in pools))
                self.note("sv_total", sum(int(p.get(k) or 0) for p in pools
                                          for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")))
                self.note("maxwait_ms", max([int(p["maxwait"]) * 1000 + int(p.get("maxwait_us") or 0) / 1000
                                             for p in pools] or [0]))
                self.samples += 1
            except Exception as exc:  # pylint: disable=broad-except
                self.errors.append(f"{type(exc).__name__}: {exc}".strip()[:200])
                for conn in (pg, bouncer):
                    try:
                        conn and conn.close()
                    except Exception:  # pylint: disable=broad-except
                        pass
                pg = bouncer = None
            self.stop.wait(self.interval)
        for conn in (pg, bouncer):
            if conn:
                conn.close()


# ------------------------------------------------------------------------------------------ steps
def ping_ok():
    try:
        with urllib.request.urlopen(f"{URL}/api/v4/system/ping?get_server_status=true", timeout=5) as response:
            body = json.loads(response.read())
        return body.get("status") == "OK" and body.get("database_status") == "OK"
    except Exception:  # pylint: disable=broad-except
        return False


def wait_ping(timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping_ok():
            return
        time.sleep(1)
    raise RuntimeError(f"{URL} does not answer its ping with the database OK")


def set_pgbouncer_ini(settings, note):
    """Put `settings` ({key: value}) into the [pgbouncer] section of the pgbouncer.ini the role wrote (the
    section is the file's last), with a first line saying who changed it. The caller reloads or restarts."""
    ini = STACK_DIR / "pgbouncer" / "pgbouncer.ini"
    text = ini.read_text(encoding="utf-8")
    for key, value in settings.items():
        text, count = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
        if count == 0:
            text = text.rstrip("\n") + f"\n{key} = {value}\n"
    if not text.startswith(f"; {note}"):
        text = f"; {note} (not by the pgbouncer role)\n" + text
    ini.write_text(text, encoding="utf-8")


def apply_seed_settings(results_root):
    """The seed's connection settings deployed by the roles: the same play with SEED as stack_plan_overrides
    and stack_plan_enforce=false (they break the capacity model, so the plan check only warns). The roles
    restart PostgreSQL and PgBouncer for settings read at start and recreate the replicas; timed."""
    log("seed settings: converge with stack_plan_overrides (stack_plan_enforce=false)")
    extra = json.dumps({"stack_plan_overrides": SEED, "stack_plan_enforce": False})
    _, output, seconds = run(converge_command() + ["-e", extra], logfile=results_root / "converge-seed.log")
    if "Check the effective plan" not in output or "...ignoring" not in output:
        sys.exit("the seed converge did not report the plan's violations: see converge-seed.log")
    for name in REPLICAS:
        wait_healthy(name)
    wait_ping()
    return {"label": "seed settings converge (the roles apply the overrides)", "seconds": seconds,
            "recap": recap(output)}


def loadtest(label, args, results_root, database=None):
    """playbooks/loadtest.yml with the benchmark scenario, sampled (PgBouncer: the pools of `database`, or
    all); the k6 summary and the samples."""
    results = results_root / label
    extra = {"loadtest_base_url": URL, "loadtest_scenarios": ["benchmark"], "loadtest_vus": args.vus,
             "loadtest_duration": args.duration, "loadtest_results_dir": str(results),
             "loadtest_state_dir": str(STACK_DIR / "loadtest-state"), "loadtest_postgres_container": POSTGRES}
    cmd = [str(VENV_BIN / "ansible-playbook"), str(LOADTEST.relative_to(ROOT)), "-e", json.dumps(extra)]
    load_before = os.getloadavg()
    sampler = Sampler(marker=str(results / "benchmark.summary.json"), database=database)
    sampler.start()
    rc, output, seconds = run(cmd, logfile=results_root / f"{label}.loadtest.log", check=False)
    sampler.stop.set()
    sampler.join(10)
    summary_file = results / "benchmark.summary.json"
    if not summary_file.exists():
        sys.exit(f"run {label}: no k6 summary (playbook exit {rc}); see {results_root / (label + '.loadtest.log')}\n"
                 + output[-3000:])
    metrics = json.loads(summary_file.read_text())["metrics"]
    duration = metrics["http_req_duration"]
    crossed = [f"{name} {rule}" for name, metric in metrics.items()
               for rule, failed in (metric.get("thresholds") or {}).items() if failed]
    login = metrics.get("http_req_duration{name:login}", {})
    log(f"run {label}: playbook exit {rc} in {seconds:.0f} s, {metrics['http_reqs']['count']} requests, "
        f"{sampler.samples} samples, sampler errors {len(sampler.errors)}")
    return {"label": label, "rc": rc, "playbook_seconds": seconds, "requests": metrics["http_reqs"]["count"],
            "rps": metrics["http_reqs"]["rate"], "p50": duration["med"], "p95": duration["p(95)"],
            "p99": duration["p(99)"], "lat_max": duration["max"], "login_p95": login.get("p(95)"),
            "error_rate": metrics["http_req_failed"]["value"], "errors": metrics["http_req_failed"].get("passes"),
            "crossed": crossed, "samples": sampler.samples,
            "sampler_errors": sampler.errors[:5], "max": sampler.max, "load_before": load_before,
            "load_after": os.getloadavg(), "results": str(results)}


# ------------------------------------------------------------------------------------------ report
def fmt_ms(value):
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def reading(runs, settings):
    """A few sentences with the differences, computed from the runs (nothing typed in by hand)."""
    by = {r["label"]: r for r in runs}
    plan, seed = by["plan"], by["seed"]
    reserve_timeout_ms = float(settings["plan"]["pgbouncer reserve_pool_timeout"]) * 1000
    reserve = (f" The plan's reserve pool ({settings['plan']['pgbouncer reserve_pool_size']} connections) opens only for "
               f"a client that waited reserve_pool_timeout ({reserve_timeout_ms / 1000:g} s); "
               + ("no client waited that long, so the plan served the load with its default pool and brief queueing."
                  if plan["max"]["maxwait_ms"] < reserve_timeout_ms else "clients did wait that long, so it opened."))

    def verdict(r):
        return "passed its thresholds" if r["rc"] == 0 and not r["crossed"] else "crossed " + "; ".join(
            r["crossed"] or [f"(playbook exit {r['rc']})"])

    return [
        f"- PostgreSQL connections: the seed settings held up to **{seed['max']['pg_clients']}** client backends "
        f"open (PgBouncer up to {seed['max']['sv_total']} server connections), the plan up to "
        f"**{plan['max']['pg_clients']}** ({plan['max']['sv_total']}); at most {seed['max']['pg_active']} and "
        f"{plan['max']['pg_active']} of them were running a query at the same moment.",
        f"- Clients waiting in PgBouncer: at most {seed['max']['cl_waiting']} with the seed settings, "
        f"{plan['max']['cl_waiting']} with the plan (longest wait {fmt_ms(seed['max']['maxwait_ms'])} and "
        f"{fmt_ms(plan['max']['maxwait_ms'])}).{reserve}",
        f"- Latency: p95 {fmt_ms(seed['p95'])} (seed) and {fmt_ms(plan['p95'])} (plan), p99 {fmt_ms(seed['p99'])} and "
        f"{fmt_ms(plan['p99'])}; throughput {seed['rps']:.1f} and {plan['rps']:.1f} req/s; error rate "
        f"{seed['error_rate'] * 100:.2f} % and {plan['error_rate'] * 100:.2f} %.",
        f"- k6: the seed run {verdict(seed)}; the plan run {verdict(plan)}.",
        "- The connection settings act on the data tier first: how many PostgreSQL backends the same work holds "
        "open. Latency and throughput on this host are bounded in both runs by the Mattermost double's CPU limit "
        "(the plan's share per replica, same in both runs) and by bcrypt at login.",
    ]


def render(args, command, started, finished, host, converges, settings, runs):
    def row(r):
        return (f"| {r['label']} | {r['rps']:.1f} | {fmt_ms(r['p50'])} | {fmt_ms(r['p95'])} | {fmt_ms(r['p99'])} "
                f"| {r['error_rate'] * 100:.2f} % | {r['max']['pg_clients']} | {r['max']['cl_waiting']} "
                f"| {verdict(r)} |")

    def verdict(r):
        if r["rc"] == 0 and not r["crossed"]:
            return "pass"
        return "FAIL: " + "; ".join(f"`{c}`" for c in r["crossed"]) if r["crossed"] else f"FAIL (playbook exit {r['rc']})"

    names = list(settings["plan"])
    lines = [
        "# Benchmark: the original lab's connection settings against the capacity plan",
        "",
        "<!-- Generated by tools/benchmark.py; do not edit. Every number below comes from the run described here. -->",
        "",
        f"- **Command:** `{command}`",
        f"- **Date:** {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC "
        f"({(finished - started).total_seconds() / 60:.1f} min in all, converges included)",
        f"- **Host:** {host['cpus']} CPU cores ({host['cpu_model']}), {host['memory_gb']:.0f} GB RAM, Linux "
        f"{host['kernel']}, Docker {host['docker']}. k6, Ansible and the whole stack share these {host['cpus']} cores; "
        f"the stack is sized by the planner for a 2 vCPU / 4 GB host with 100 users and 3 replicas. "
        f"Load average (1 min) before each run: {', '.join('%s %.1f' % (r['label'], r['load_before'][0]) for r in runs)} "
        "(other workloads on the same engine count in it).",
        f"- **Scenario:** `loadtest/benchmark.js` through `playbooks/loadtest.yml`: {args.vus} virtual users "
        f"(one seeded account each) ramping up over the first quarter of {args.duration}, holding, ramping down; "
        "each logs in once, then per iteration lists its teams and its channels, reads the last 30 posts of a "
        "channel and posts a message, with a think time of 0.5-1.5 s. Requests go to Nginx on loopback.",
        "- **What is real and what is a test double:** PostgreSQL, PgBouncer and Nginx are the real servers, "
        "from Debian's packages in the offline lab images (`tests/lab/images.yml`; versions in docs/images.md). "
        "**Mattermost is a test double** "
        "(`tests/lab/images/mattermost-double`, a small Python service with Mattermost's API subset, bcrypt "
        "cost 10 and a connection pool capped at MaxOpenConns) - the absolute numbers say nothing about real "
        "Mattermost's throughput; what the comparison shows is what the connection settings do to the data tier "
        "under the same load.",
        "",
        "## Results",
        "",
        "| settings | throughput (req/s) | p50 | p95 | p99 | error rate | PostgreSQL connections (max) "
        "| PgBouncer clients waiting (max) | k6 thresholds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *[row(r) for r in runs],
        "",
        "Throughput is k6's `http_reqs` rate over the whole run (ramps included); latencies are k6's "
        "`http_req_duration` (all requests, logins included); the error rate is k6's `http_req_failed` "
        "(anything but 200/201). PostgreSQL connections: the maximum of client backends in "
        "`pg_stat_activity` without the sampler's own. PgBouncer clients waiting: the maximum of `cl_waiting` "
        "summed over the pools of `SHOW POOLS`. Both sampled twice a second while k6 ran (not while the "
        "playbook seeded the accounts).",
        "",
        "| details | " + " | ".join(r["label"] for r in runs) + " |",
        "|---|" + "---:|" * len(runs),
        "| requests | " + " | ".join(str(r["requests"]) for r in runs) + " |",
        "| login p95 (bcrypt on the server) | " + " | ".join(fmt_ms(r["login_p95"]) for r in runs) + " |",
        "| max latency | " + " | ".join(fmt_ms(r["lat_max"]) for r in runs) + " |",
        "| `SELECT count(*) FROM pg_stat_activity` (max, background processes and sampler included) | "
        + " | ".join(str(r["max"]["pg_all"]) for r in runs) + " |",
        "| PostgreSQL client backends active at once (max) | " + " | ".join(str(r["max"]["pg_active"]) for r in runs) + " |",
        "| PgBouncer server connections (max) | " + " | ".join(str(r["max"]["sv_total"]) for r in runs) + " |",
        "| PgBouncer client connections active (max) | " + " | ".join(str(r["max"]["cl_active"]) for r in runs) + " |",
        "| PgBouncer longest wait (max of `maxwait`) | " + " | ".join(fmt_ms(r["max"]["maxwait_ms"]) for r in runs) + " |",
        "| samples (sampler errors) | " + " | ".join(f"{r['samples']} ({len(r['sampler_errors'])})" for r in runs) + " |",
        "| load average before / after (1 min) | "
        + " | ".join(f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f}" for r in runs) + " |",
        "",
        "## Reading the results",
        "",
        *reading(runs, settings),
        "",
        "## Settings in force",
        "",
        "Read back from the running containers just before each run (`SHOW max_connections`, PgBouncer's "
        "`SHOW CONFIG`, the replicas' environment).",
        "",
        "| setting | " + " | ".join(settings) + " |",
        "|---|" + "---|" * len(settings),
        *[f"| {name} | " + " | ".join(f"`{settings[label][name]}`" for label in settings) + " |" for name in names],
        "",
        "**How the seed settings were applied.** Through the roles: after the plan run the benchmark converged "
        "the same play again with the seed values as `stack_plan_overrides` and `stack_plan_enforce=false`. The "
        "capacity model refuses them (session pooling pins one server connection per client: 3 x 30 clients "
        "against a server pool of 50 and `max_connections` "
        f"{settings['plan']['postgres max_connections']}), so the plan check only warned, as that documented "
        "switch is for. The roles then restarted PostgreSQL for `max_connections = 100` (the seed ran "
        "PostgreSQL's default; with the plan's "
        f"{settings['plan']['postgres max_connections']} a pool of 50 could never fill), restarted PgBouncer for "
        "the session pool and recreated the three replicas with `MM_SQLSETTINGS_MAXOPENCONNS=30` and "
        "`MM_SQLSETTINGS_MAXIDLECONNS=10`. Container CPU and memory limits are the plan's in both runs. The plan "
        "ran first, on the freshly converged stack; the seed run followed on the same database (with the posts "
        "of the first run in it).",
        "",
        "## Converging the lab stack",
        "",
        "`tests/integration/loadtest/play.yml` (postgres, pgbouncer, mattermost x 3, nginx roles; images from "
        "the lab's archives), timed around `ansible-playbook`:",
        "",
        "| converge | time | tasks changed |",
        "|---|---:|---:|",
        *[f"| {c['label']} | {c['seconds']:.0f} s | {c['recap'].get('changed', '?')} |" for c in converges],
        "",
        "The machine was shared with other test runs at the time, so these times are upper bounds.",
        "",
        "## Running it again, and load tests of your own",
        "",
        "```bash",
        f"{command}     # this report (raw data: results/benchmark-<timestamp>/)",
        ".venv/bin/python tools/benchmark.py --quick   # 30 VUs, 30 s per run",
        "# any stack: scenarios benchmark, scenario-a, scenario-b, scenario-c; results/<timestamp>/ gets",
        "# <scenario>.summary.json, <scenario>.html (offline report), <scenario>.log and summary.json",
        "ansible-playbook playbooks/loadtest.yml -e loadtest_base_url=https://chat.example.com \\",
        "  -e loadtest_scenarios=benchmark,scenario-c -e loadtest_vus=100 -e loadtest_duration=5m \\",
        "  -e loadtest_stack_host=<inventory host running PostgreSQL> -i <inventory>",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_report(path, plan_seed=None, sweep=None):
    """docs/benchmarks.md: the plan-vs-seed report (render() above) followed by the pool-size sweep
    (tools/pool_sweep.py) between SWEEP_BEGIN and SWEEP_END. A part given as None is kept as it is."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    head, found, rest = old.partition(SWEEP_BEGIN)
    old_sweep = rest.partition(SWEEP_END)[0].strip("\n") if found else ""
    head = (head if plan_seed is None else plan_seed).rstrip("\n")
    sweep = old_sweep if sweep is None else sweep.strip("\n")
    text = head + (f"\n\n{SWEEP_BEGIN}\n{sweep}\n{SWEEP_END}" if sweep else "")
    path.write_text(text.lstrip("\n") + "\n", encoding="utf-8")


def host_info():
    return {"cpus": os.cpu_count(), "kernel": platform.release(),
            "memory_gb": int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1048576,
            "cpu_model": re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1).strip(),
            "docker": docker("version", "--format", "{{.Server.Version}}").strip()}


def prepare(args, results_root):
    """The collection link for Ansible (scripts/lib.sh), the lab images (unless --no-build), no earlier
    lt-bench stack."""
    results_root.mkdir(parents=True)
    run(["bash", "-c", 'source scripts/lib.sh && link_collection'])
    if not args.no_build:
        log("lab images")
        run([str(ROOT / "tests" / "lab" / "build-images")], logfile=results_root / "build-images.log")
    run([str(CLEANUP)])


def converge_command():
    return [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(PLAY.relative_to(ROOT))]


def converge(results_root, labels):
    """play.yml once per label, timed; [{label, seconds, recap}]."""
    converges = []
    cmd = converge_command()
    for label in labels:
        log(label)
        _, output, seconds = run(cmd, logfile=results_root / f"converge-{len(converges) + 1}.log")
        converges.append({"label": label, "seconds": seconds, "recap": recap(output)})
        log(f"{label}: {seconds:.0f} s, {recap(output)}")
    return converges


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 VUs, 30 s per run")
    parser.add_argument("--vus", type=int, help="virtual users (default 100, --quick 30)")
    parser.add_argument("--duration", help="k6 duration of each run (default 90s, --quick 30s)")
    parser.add_argument("--keep", action="store_true", help="leave the stack running (with the seed settings)")
    parser.add_argument("--no-build", action="store_true", help="do not run tests/lab/build-images first")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--render-only", metavar="BENCHMARK_JSON",
                        help="only write the report again from the raw data of an earlier run (its benchmark.json)")
    args = parser.parse_args()
    if args.render_only:
        data = json.loads(Path(args.render_only).read_text())
        ran = argparse.Namespace(**data["args"])
        write_report(args.output, render(ran, data["command"], dt.datetime.fromisoformat(data["started"]),
                                         dt.datetime.fromisoformat(data["finished"]), data["host"], data["converges"],
                                         data["settings"], data["runs"]))
        log(f"wrote {args.output} from {args.render_only}")
        return
    args.vus = args.vus or (30 if args.quick else 100)
    args.duration = args.duration or ("30s" if args.quick else "90s")
    command = shlex.join([".venv/bin/python", "tools/benchmark.py", *sys.argv[1:]])
    started = dt.datetime.now(dt.timezone.utc)
    results_root = ROOT / "results" / f"benchmark-{started:%Y%m%dT%H%M%SZ}"
    host = host_info()
    prepare(args, results_root)
    try:
        converges = converge(results_root, ("fresh converge (empty engine: images loaded, containers created)",
                                            "no-op converge (nothing to change)"))
        wait_ping()

        settings, runs = {}, []
        settings["plan"] = effective_settings()
        log(f"run plan: {args.vus} VUs for {args.duration}")
        runs.append(loadtest("plan", args, results_root))

        converges.append(apply_seed_settings(results_root))
        settings["seed"] = effective_settings()
        log(f"run seed: {args.vus} VUs for {args.duration}")
        runs.append(loadtest("seed", args, results_root))
        finished = dt.datetime.now(dt.timezone.utc)
        (results_root / "benchmark.json").write_text(json.dumps(
            {"command": command, "args": {"vus": args.vus, "duration": args.duration}, "started": started.isoformat(),
             "finished": finished.isoformat(), "host": host, "converges": converges, "settings": settings,
             "runs": runs}, indent=2))
        write_report(args.output, render(args, command, started, finished, host, converges, settings, runs))
        log(f"wrote {args.output} (raw data in {results_root})")
    finally:
        if not args.keep:
            run([str(CLEANUP)], check=False)


if __name__ == "__main__":
    main()
