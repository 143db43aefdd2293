#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PgBouncer pool-size sweep: default_pool_size 2, 3, 5, 8, 10, 15, 20, 50 on one converged lab stack, in one
run, each under the k6 `benchmark` scenario (through Nginx) and pgbench TPC-B (through PgBouncer); writes
docs/data/pool-sweep.json, docs/img/pool-sweep.png and the "Pool size sweep" part of docs/benchmarks.md.

    .venv/bin/python tools/pool_sweep.py --quiet-wait 30  # 2 rounds of k6 100 VUs 40 s + pgbench 30 s (~35 min)
    .venv/bin/python tools/pool_sweep.py --quick    # k6 30 VUs 15 s + pgbench 10 s per pool size
    (--quiet-wait 30: before each run, up to 30 s for a quieter machine; --rounds 1: one round, ~20 min)
    .venv/bin/python tools/pool_sweep.py --render-only docs/data/pool-sweep.json

Same stack, names and cleanup as tools/benchmark.py (whose helpers it uses): containers lt-bench-*, Nginx on
127.0.0.1:18091, pgbench in a one-off container lt-bench-pgbench on the stack network.
  1. converges the stack (tests/integration/loadtest/play.yml) with the plan for the 2 vCPU / 4 GB lab host;
  2. once: PostgreSQL max_connections 120 (ALTER SYSTEM, one restart); PgBouncer pool_mode transaction,
     reserve_pool_size 0, max_db_connections 0 (unlimited), max_client_conn 300, and a `pgbench` database entry
     (pgbouncer.ini and userlist.txt rewritten, SIGHUP = RELOAD); a `pgbench` role and database in PostgreSQL
     (pg_hba.conf line for the stack network), initialised (scale 20) directly against PostgreSQL; a short k6
     run that seeds the accounts (kept for every later run) and warms the stack up;
  3. per round (ascending, then descending, ...) and pool size: default_pool_size rewritten + SIGHUP, read back
     with SHOW CONFIG (the run stops if it differs), CHECKPOINT, then the k6 run and the pgbench run, each with
     the load average before it and
     PgBouncer's pools sampled twice a second, and the CPU time that other jobs on the machine (the hypervisor's
     steal included) took during it; per pool size the median of its quiet rounds is reported (combine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import resource
import secrets
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import benchmark as bm

POOLS = (2, 3, 5, 8, 10, 15, 20, 50)
DATA = bm.ROOT / "docs" / "data" / "pool-sweep.json"
PLOT = bm.ROOT / "docs" / "img" / "pool-sweep.png"
PGBENCH = f"{bm.PREFIX}-pgbench"
MAX_CONNECTIONS = 120  # 50 + 50 (the k6 and the pgbench pool) + direct clients and the sampler
FIXED = {"pool_mode": "transaction", "reserve_pool_size": "0", "max_db_connections": "0", "max_client_conn": "300"}
QUIET_CORES = 0.25  # --quiet-wait: what counts as a quiet machine (other jobs' cores over 5 s)
NOTE = "POOL-SIZE SWEEP settings applied by tools/pool_sweep.py"


def planner_pool(users=100, replicas=3, vcpus=2, memory_mb=4096):
    """default_pool_size the capacity planner picks for the lab host, and where the planner was imported from."""
    sys.path[:0] = [path for path in (str(bm.ROOT), str(bm.ROOT / ".collections")) if path not in sys.path]
    try:
        from plugins.module_utils.capacity import stack_plan  # pylint: disable=import-outside-toplevel
        source = "plugins/module_utils/capacity.py"
    except ImportError:
        from plugins.filter.stack_plan import stack_plan  # pylint: disable=import-outside-toplevel
        source = "plugins/filter/stack_plan.py"
    plan = stack_plan(users=users, replicas=replicas, vcpus=vcpus, memory_mb=memory_mb)
    return int(plan["pgbouncer"]["default_pool_size"]), source


# ------------------------------------------------------------------------------------------ stack
def pgbouncer_config():
    with bm.pgbouncer_connect() as bouncer:
        return {row["key"]: row["value"] for row in bm.show(bouncer, "SHOW CONFIG")}


def reload_pgbouncer(pool_size=None):
    """SIGHUP (PgBouncer's RELOAD; the stats user may not RELOAD), then wait until no pool holds more
    server connections than `pool_size` (PgBouncer's janitor closes the surplus)."""
    bm.docker("kill", "-s", "HUP", bm.PGBOUNCER)
    deadline = time.monotonic() + 60
    while pool_size and time.monotonic() < deadline:
        with bm.pgbouncer_connect() as bouncer:
            pools = [p for p in bm.show(bouncer, "SHOW POOLS") if p["database"] != "pgbouncer"]
        if all(sum(int(p.get(k) or 0) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
               <= pool_size for p in pools):
            return
        time.sleep(1)


def prepare_stack(password):
    """The settings every pool size shares, and the pgbench role, database and PgBouncer entry."""
    bm.log(f"PostgreSQL max_connections={MAX_CONNECTIONS} (ALTER SYSTEM, one restart)")
    bm.docker("exec", "-u", "postgres", bm.POSTGRES, "psql", "-X", "-q", "-c",
              f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
    bm.docker("restart", "-t", "30", bm.POSTGRES)
    bm.wait_healthy(bm.POSTGRES)
    subnet = json.loads(bm.docker("network", "inspect", bm.NETWORK))[0]["IPAM"]["Config"][0]["Subnet"]
    hba = bm.STACK_DIR / "postgres" / "pg_hba.conf"
    hba.write_text(hba.read_text(encoding="utf-8") + f"# {NOTE}\nhost    pgbench  pgbench  {subnet}  scram-sha-256\n",
                   encoding="utf-8")
    with bm.pg_connect() as pg:
        pg.execute(f"CREATE ROLE pgbench LOGIN PASSWORD '{password}'")  # hex: nothing to quote
        pg.execute("CREATE DATABASE pgbench OWNER pgbench")
        pg.execute("SELECT pg_reload_conf()")
        time.sleep(1)
        errors = pg.execute("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL").fetchall()
        verifier = pg.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'pgbench'").fetchone()[0]
    if errors:
        raise RuntimeError(f"pg_hba.conf: {errors}")
    bm.log("PgBouncer: " + ", ".join(f"{k}={v}" for k, v in FIXED.items()) + ", pgbench database (SIGHUP)")
    conf = bm.STACK_DIR / "pgbouncer"
    ini = (conf / "pgbouncer.ini").read_text(encoding="utf-8")
    entry = f"pgbench = host={bm.POSTGRES} port=5432 dbname=pgbench\n"
    (conf / "pgbouncer.ini").write_text(ini.replace("[databases]\n", "[databases]\n" + entry, 1), encoding="utf-8")
    with open(conf / "userlist.txt", "a", encoding="utf-8") as userlist:
        userlist.write(f'"pgbench" "{verifier}"\n')
    bm.set_pgbouncer_ini(FIXED, NOTE)
    reload_pgbouncer()
    bm.wait_ping()


def pgbench(password, args, extra, timeout):
    """pgbench, by docker exec in PGBENCH: a helper container on the stack network (the PostgreSQL lab image,
    no CPU limit, so it shares the host's cores with everything else; its cgroup counts pgbench's CPU time),
    with pgbench's output directory mounted at /out. Stopped by `timeout` inside the container."""
    out = bm.STACK_DIR / "pgbench"
    if not out.exists():
        out.mkdir()
        bm.docker("run", "-d", "--name", PGBENCH, "--network", bm.NETWORK, "-v", f"{out}:/out", "--entrypoint",
                  "sleep", bm.inspect(bm.POSTGRES)["Config"]["Image"], "infinity")
    cmd = ["docker", "exec", "-e", "PGPASSWORD", PGBENCH, "timeout", "-s", "INT", str(timeout), "pgbench", "-U",
           "pgbench", *extra, "pgbench"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60, check=False,
                          env={**os.environ, "PGPASSWORD": password})
    with open(args.results / "pgbench.log", "a", encoding="utf-8") as log_file:
        log_file.write(f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr, out


def cpu_seconds():
    """(busy CPU seconds of the whole host, CPU seconds of this benchmark), both since some fixed moment: this
    benchmark is its containers (cgroups v1 cpuacct or v2 cpu.stat), the docker-proxy of its port, this process
    and its waited-for children (Ansible, k6, the docker CLI). The difference is other jobs on the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = [int(x) for x in Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:9]]
    busy = (sum(fields) - fields[3] - fields[4]) / tick  # all but idle and iowait; steal (fields[7]) included
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    ours = sum(r.ru_utime + r.ru_stime for r in usage)
    for cid in bm.docker("ps", "-q", "--no-trunc", "--filter", f"name=^{bm.PREFIX}-").split():
        for base in (f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage", f"/sys/fs/cgroup/docker/{cid}/cpu.stat",
                     f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"):
            if os.path.exists(base):
                text = Path(base).read_text(encoding="ascii")
                ours += int(text) / 1e9 if base.endswith("usage") else int(text.split()[1]) / 1e6
                break
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if b"docker-proxy" in (entry / "cmdline").read_bytes() and f"\0{bm.PORT}\0".encode() in (
                    entry / "cmdline").read_bytes():
                stat = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
                ours += (int(stat[11]) + int(stat[12])) / tick
        except OSError:
            continue
    return busy, ours, fields[7] / tick


class CpuWatch:
    """Around one run: the host's busy cores and the cores other jobs took (on average over the run)."""

    def __init__(self):
        self.started, self.before, self.result = None, None, {}

    def __enter__(self):
        self.started, self.before = time.monotonic(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        (busy0, ours0, steal0), (busy1, ours1, steal1) = self.before, cpu_seconds()
        wall = time.monotonic() - self.started
        # Steal: time the hypervisor gave this VM's vCPUs to other guests; part of other_jobs_cores.
        self.result = {"host_busy_cores": (busy1 - busy0) / wall,
                       "other_jobs_cores": max(0.0, (busy1 - busy0) - (ours1 - ours0)) / wall,
                       "steal_cores": (steal1 - steal0) / wall}
        return False


def wait_quiet(args):
    """Up to args.quiet_wait seconds, until other jobs took at most QUIET_CORES over a 5 s window; the seconds
    waited and the last window's value."""
    started, others = time.monotonic(), None
    while args.quiet_wait:
        with CpuWatch() as cpu:
            time.sleep(5)
        others = cpu.result["other_jobs_cores"]
        if others <= QUIET_CORES or time.monotonic() - started >= args.quiet_wait:
            break
    return {"quiet_wait_seconds": time.monotonic() - started, "other_jobs_cores_before": others}


def percentile(ordered, share):
    """Nearest-rank percentile of a sorted list (an element of the list, no interpolation)."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else None


def pgbench_run(pool, password, args):
    """TPC-B through PgBouncer; tps from pgbench's summary, p50/p95 exact from its per-transaction log."""
    prefix = f"pool-{pool}"
    options = ["-h", bm.PGBOUNCER, "-p", "6432", "-M", "simple", "-c", str(args.clients), "-j", "2", "-T",
               str(args.seconds), "-l", "--log-prefix", f"/out/{prefix}"]
    quiet = wait_quiet(args)
    load_before = os.getloadavg()
    sampler = bm.Sampler(marker=None, active=lambda: True, database="pgbench")
    sampler.start()
    started = time.monotonic()
    try:
        with CpuWatch() as cpu:
            output, out = pgbench(password, args, options, timeout=args.seconds + 180)
    finally:
        sampler.stop.set()
        sampler.join(10)
    latencies, failed = [], 0
    for log_file in sorted(out.glob(f"{prefix}.*")):
        for line in log_file.read_text(encoding="utf-8").splitlines():
            field = line.split()[2]
            if field.isdigit():
                latencies.append(int(field) / 1000)
            else:
                failed += 1  # "failed" or "skipped"
        log_file.unlink()
    latencies.sort()

    def grab(pattern, cast=float):
        match = re.search(pattern, output)
        return cast(match.group(1)) if match else None

    result = {"throughput": grab(r"tps = ([0-9.]+) \(without initial connection time\)"),
              "p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95),
              "p99_ms": percentile(latencies, 0.99), "mean_ms": grab(r"latency average = ([0-9.]+) ms"),
              "requests": grab(r"number of transactions actually processed: (\d+)", int),
              "errors": (grab(r"number of failed transactions: (\d+)", int) or 0) + failed,
              "logged": len(latencies), "seconds": time.monotonic() - started, "load_before": load_before,
              "max": sampler.max, "samples": sampler.samples, "sampler_errors": sampler.errors[:5], **cpu.result,
              **quiet}
    bm.log(f"pgbench pool {pool}: {result['throughput']} tps, p95 {result['p95_ms']:.1f} ms, "
           f"{result['requests']} transactions, {result['errors']} failed; other jobs' CPU "
           f"{result['other_jobs_cores']:.2f} cores")
    return result


def k6_run(pool, args):
    quiet = wait_quiet(args)
    with CpuWatch() as cpu:
        k6 = bm.loadtest(f"pool-{pool}", args, args.results, database="mattermost")
    bm.log(f"k6 pool {pool}: other jobs' CPU {cpu.result['other_jobs_cores']:.2f} cores")
    return {"throughput": k6["rps"], "p50_ms": k6["p50"], "p95_ms": k6["p95"], "p99_ms": k6["p99"],
            "requests": k6["requests"], "errors": k6["errors"], "error_rate": k6["error_rate"], "rc": k6["rc"],
            "crossed": k6["crossed"], "login_p95_ms": k6["login_p95"], "load_before": k6["load_before"],
            "max": k6["max"], "samples": k6["samples"], "sampler_errors": k6["sampler_errors"], **cpu.result,
            **quiet}


def combine(results):
    """One workload's rounds at one pool size: the rounds in which other jobs (the hypervisor's steal
    included) took at most QUIET_CORES, or else the one in which they took the least; of those the median
    throughput and latencies and the mean CPU accounting. Errors count over every round; the raw rounds
    are kept under "rounds" and the ones used are numbered (from 1) under "rounds_used"."""
    if len(results) == 1:
        return results[0]
    used = [n for n, r in enumerate(results) if r.get("other_jobs_cores", 0.0) <= QUIET_CORES] or \
        [min(range(len(results)), key=lambda n: results[n].get("other_jobs_cores", 0.0))]
    chosen = [results[n] for n in used]
    median = sorted(chosen, key=lambda r: r["throughput"])[(len(chosen) - 1) // 2]
    merged = {**median, "rounds": results, "rounds_used": [n + 1 for n in used],
              "errors": sum(r["errors"] for r in results), "requests": sum(r["requests"] for r in results)}
    for key in ("throughput", "p50_ms", "p95_ms", "p99_ms"):
        merged[key] = statistics.median(r[key] for r in chosen)
    for key in ("other_jobs_cores", "steal_cores", "host_busy_cores"):
        merged[key] = statistics.mean(r.get(key, 0.0) for r in chosen)
    return merged


def recombine(data):
    """DATA with every workload's result combined again from its raw rounds (after a change to combine)."""
    for run in data["runs"]:
        for workload in ("k6", "pgbench"):
            if "rounds" in run[workload]:
                run[workload] = combine(run[workload]["rounds"])
    return data


def sweep(args, password):
    """args.rounds rounds over the pool sizes, ascending then descending (so that a slow spell of the machine
    does not always hit the same end); per pool size the median of its rounds (combine)."""
    rounds = {}
    for number in range(args.rounds):
        for pool in args.pools if number % 2 == 0 else reversed(args.pools):
            rounds.setdefault(pool, []).append(one_pool(pool, password, args, number + 1))
            (args.results / "runs.partial.json").write_text(json.dumps(rounds, indent=1), encoding="utf-8")
    return [{"pool_size": pool, "show_config": results[-1]["show_config"],
             **{w: combine([r[w] for r in results]) for w in ("k6", "pgbench")}}
            for pool, results in sorted(rounds.items())]


def one_pool(pool, password, args, number):
    """One round at one pool size: default_pool_size set and read back, then k6, then pgbench."""
    bm.set_pgbouncer_ini({"default_pool_size": pool}, NOTE)
    reload_pgbouncer(pool)
    config = pgbouncer_config()
    wanted = {**FIXED, "default_pool_size": str(pool)}
    if any(config.get(k) != v for k, v in wanted.items()):
        raise RuntimeError(f"PgBouncer's SHOW CONFIG disagrees: {wanted} asked, {config} in force")
    with bm.pg_connect() as pg:
        pg.execute("CHECKPOINT")
    bm.log(f"round {number}/{args.rounds}, pool {pool}: SHOW CONFIG default_pool_size="
           f"{config['default_pool_size']}; k6 {args.vus} VUs for {args.duration}, then pgbench {args.clients} "
           f"clients for {args.seconds} s")
    return {"show_config": {k: config.get(k) for k in bm.PGBOUNCER_SHOWN},
            "k6": k6_run(pool, args), "pgbench": pgbench_run(pool, password, args)}


# ------------------------------------------------------------------------------------------ main
def measure(args, command):
    started = dt.datetime.now(dt.timezone.utc)
    args.results = bm.ROOT / "results" / f"pool-sweep-{started:%Y%m%dT%H%M%SZ}"
    host = bm.host_info()
    bm.prepare(args, args.results)
    password = secrets.token_hex(16)
    try:
        converges = bm.converge(args.results, ("fresh converge (empty engine: images loaded, containers created)",))
        bm.wait_ping()
        prepare_stack(password)
        bm.log(f"pgbench -i -s {args.scale}, directly against PostgreSQL")
        init_started = time.monotonic()
        pgbench(password, args, ["-h", bm.POSTGRES, "-p", "5432", "-i", "-q", "-s", str(args.scale)], timeout=600)
        init_seconds = time.monotonic() - init_started
        warmup = argparse.Namespace(vus=args.vus, duration="10s")
        bm.log(f"k6 warm-up: seeds {args.vus} accounts once, 10 s of load (not in the results)")
        warm = bm.loadtest("warmup", warmup, args.results)
        with bm.pg_connect() as pg:
            max_connections = pg.execute("SHOW max_connections").fetchone()[0]
        containers = {name: {"cpus": bm.inspect(name)["HostConfig"]["NanoCpus"] / 1e9,
                             "memory_mb": bm.inspect(name)["HostConfig"]["Memory"] >> 20}
                      for name in (bm.POSTGRES, bm.PGBOUNCER, *bm.REPLICAS, bm.NGINX)}
        replica = bm.replica_env(bm.REPLICAS[0])
        runs = sweep(args, password)
        finished = dt.datetime.now(dt.timezone.utc)
    finally:
        bm.docker("rm", "-f", PGBENCH, check=False)
        if not args.keep:
            bm.run([str(bm.CLEANUP)], check=False)
    pool, source = planner_pool()
    return {
        "schema": 1, "command": command, "started": started.isoformat(), "finished": finished.isoformat(),
        "host": host, "converge_seconds": converges[0]["seconds"], "pgbench_init_seconds": init_seconds,
        "warmup": {"requests": warm["requests"], "rps": warm["rps"], "rc": warm["rc"]},
        "quiet_wait": {"max_seconds": args.quiet_wait, "quiet_cores": QUIET_CORES},
        "k6": {"scenario": "benchmark", "vus": args.vus, "duration": args.duration},
        "pgbench": {"mode": "TPC-B", "scale": args.scale, "clients": args.clients, "threads": 2,
                    "seconds": args.seconds, "protocol": "simple", "container": PGBENCH},
        "fixed": {"postgres max_connections": max_connections, **{f"pgbouncer {k}": v for k, v in FIXED.items()},
                  "mattermost MaxOpenConns": replica["MM_SQLSETTINGS_MAXOPENCONNS"]},
        "containers": containers, "planner_at_run": {"default_pool_size": pool, "source": source},
        "pool_sizes": list(args.pools), "rounds": args.rounds, "runs": runs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="k6 30 VUs 15 s, pgbench 10 s per pool size")
    parser.add_argument("--pools", type=lambda s: [int(x) for x in s.split(",")], default=list(POOLS),
                        help="pool sizes, comma-separated (default %(default)s)")
    parser.add_argument("--vus", type=int, help="k6 virtual users (default 100, --quick 30)")
    parser.add_argument("--duration", help="k6 duration per pool size (default 40s, --quick 15s)")
    parser.add_argument("--seconds", type=int, help="pgbench -T per pool size (default 30, --quick 10)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds over the pool sizes, alternately ascending and descending; per pool size the "
                             f"median of its rounds with other jobs <= {QUIET_CORES} cores (else its quietest "
                             "round) is reported (default %(default)s)")
    parser.add_argument("--clients", type=int, default=100, help="pgbench clients (default 100)")
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (default 20)")
    parser.add_argument("--quiet-wait", type=int, default=0, metavar="SECONDS",
                        help=f"before each run, wait up to this long for other jobs to use <= {QUIET_CORES} cores")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--no-build", action="store_true", help="do not run tests/lab/build-images first")
    parser.add_argument("--data", default=str(DATA), help="raw results (default docs/data/pool-sweep.json)")
    parser.add_argument("--output", default=str(bm.ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--plot", default=str(PLOT))
    parser.add_argument("--render-only", metavar="JSON", help="only render the docs again from this JSON")
    args = parser.parse_args()
    import pool_sweep_report as report  # pylint: disable=import-outside-toplevel
    if args.render_only:
        data = recombine(json.loads(Path(args.render_only).read_text(encoding="utf-8")))
    else:
        args.vus = args.vus or (30 if args.quick else 100)
        args.duration = args.duration or ("15s" if args.quick else "40s")
        args.seconds = args.seconds or (10 if args.quick else 30)
        data = measure(args, shlex.join([".venv/bin/python", "tools/pool_sweep.py", *sys.argv[1:]]))
        Path(args.data).parent.mkdir(parents=True, exist_ok=True)
        Path(args.data).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        bm.log(f"wrote {args.data}")
    report.write(data, args, planner_pool())


if __name__ == "__main__":
    main()
