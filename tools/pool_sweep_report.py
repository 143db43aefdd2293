# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The "Pool size sweep" part of docs/benchmarks.md and its plot, from docs/data/pool-sweep.json
(written by tools/pool_sweep.py, which calls write())."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import benchmark as bm

WORKLOADS = {"k6": ("k6 benchmark", "req/s"), "pgbench": ("pgbench TPC-B", "tps")}
THROUGHPUT_SHARE, P95_FACTOR = 0.95, 1.1  # issue 14: within 5 % of the best throughput, p95 <= 1.1 x the best


def assess(runs, workload):
    """Best pool by throughput, and the pools within THROUGHPUT_SHARE of the best throughput whose p95 is at
    most P95_FACTOR x the best (lowest) p95."""
    best = max(runs, key=lambda r: r[workload]["throughput"])
    best_tp = best[workload]["throughput"]
    best_p95 = min(r[workload]["p95_ms"] for r in runs)
    good = [r["pool_size"] for r in runs if r[workload]["throughput"] >= THROUGHPUT_SHARE * best_tp
            and r[workload]["p95_ms"] <= P95_FACTOR * best_p95]
    return {"best_pool": best["pool_size"], "best_throughput": best_tp, "best_p95_ms": best_p95, "good": good}


def plot(data, path, planner):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    runs, pools = data["runs"], [r["pool_size"] for r in data["runs"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    twin = left.twinx()
    lines = [left.plot(pools, [r["k6"]["throughput"] for r in runs], "o-", color="C0", label="k6 req/s (left)")[0],
             twin.plot(pools, [r["pgbench"]["throughput"] for r in runs], "s-", color="C1",
                       label="pgbench tps (right)")[0]]
    left.set_ylabel("k6 requests/s", color="C0")
    twin.set_ylabel("pgbench transactions/s", color="C1")
    left.set_ylim(0, max(r["k6"]["throughput"] for r in runs) * 1.15)
    twin.set_ylim(0, max(r["pgbench"]["throughput"] for r in runs) * 1.15)
    left.set_title("Throughput")
    left.legend(handles=lines, loc="lower right", fontsize=8)
    for name, marker, color in (("k6", "o", "C0"), ("pgbench", "s", "C1")):
        right.plot(pools, [r[name]["p95_ms"] for r in runs], f"{marker}-", color=color, label=f"{name} p95")
    right.set_ylim(0, max(r[w]["p95_ms"] for r in runs for w in WORKLOADS) * 1.15)
    right.set_ylabel("p95 latency (ms)")
    right.set_title("p95 latency")
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xticks(pools, [str(p) for p in pools])
        axis.minorticks_off()
        axis.set_xlabel("PgBouncer default_pool_size")
        axis.axvline(planner, color="grey", linestyle="--", linewidth=1, label=f"planner's pool ({planner})")
        axis.grid(True, alpha=0.3)
    right.legend(loc="best", fontsize=8)
    others = [r[w]["other_jobs_cores"] for r in runs for w in WORKLOADS if "other_jobs_cores" in r[w]]
    busy = f"; other jobs took {sum(others) / len(others):.2f} cores on average" if others else ""
    fig.suptitle(f"PgBouncer pool-size sweep ({data['started'][:10]}, {data['host']['cpus']} cores shared by the "
                 f"stack and the load{busy})", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def cores(result):
    value = result.get("other_jobs_cores")
    return "-" if value is None else f"{value:.2f}"


def noise(data):
    """What the other jobs on the machine did to the comparison, from the runs' CPU accounting."""
    runs, cpus, wait = data["runs"], data["host"]["cpus"], data.get("quiet_wait", {})
    others = [r[w]["other_jobs_cores"] for r in runs for w in WORKLOADS if "other_jobs_cores" in r[w]]
    if not others:
        return "Single runs on a shared machine: the load average before each run is below."
    text = (f"CPU time not spent by this benchmark (other jobs on the machine): {min(others):.2f} to "
            f"{max(others):.2f} of its {cpus} cores during the runs (mean {sum(others) / len(others):.2f}; last "
            "column below). ")
    if wait.get("max_seconds"):
        waits = [r[w] for r in runs for w in WORKLOADS]
        quiet = sum(1 for x in waits if (x["other_jobs_cores_before"] or 0) <= wait["quiet_cores"])
        text += (f"Before each run the tool waited up to {wait['max_seconds']} s for other jobs to use at most "
                 f"{wait['quiet_cores']} cores over 5 s ({sum(x['quiet_wait_seconds'] for x in waits) / 60:.1f} min "
                 f"in all; quiet before {quiet} of {len(waits)} runs). ")
    steal = [r[w]["steal_cores"] for r in runs for w in WORKLOADS if "steal_cores" in r[w]]
    if steal:
        text += (f"Of that, the hypervisor's steal (time this VM's vCPUs ran other guests): {min(steal):.2f} to "
                 f"{max(steal):.2f} cores. ")
    if data.get("rounds", 1) > 1:
        used = [r[w].get("rounds_used", []) for r in runs for w in WORKLOADS]
        dropped = sum(data["rounds"] - len(u) for u in used if u)
        return text + (f"Each pool size ran {data['rounds']} times, in rounds alternately ascending and descending. "
                       f"A round in which other jobs took more than {wait.get('quiet_cores', 0.25)} cores is left out "
                       "when a quieter round of the same pool size and workload exists (the quietest is kept "
                       f"otherwise): {dropped} of {data['rounds'] * len(used)} runs were left out. The table shows "
                       "the median of the rounds kept (every round's raw result is in the JSON), so a slow spell of "
                       "the machine does not decide a pool size. Differences of a few percent remain within noise.")
    if max(others) > 0.3:
        return text + ("They took CPU from PostgreSQL, PgBouncer, the replicas and the load generators unevenly, "
                       "so differences between pool sizes are partly their doing; each pool size ran once. **Do not "
                       "calibrate the planner from this run**: run the same command again on an otherwise idle "
                       "machine.")
    return text + "Each pool size ran once: differences of a few percent are within run-to-run noise."


def fmt_ms(value):
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def render(data, data_path, image, planner):
    runs = data["runs"]
    verdicts = {w: assess(runs, w) for w in WORKLOADS}
    both = [p for p in verdicts["k6"]["good"] if p in verdicts["pgbench"]["good"]]
    started, finished = (dt.datetime.fromisoformat(data[k]) for k in ("started", "finished"))
    host, k6, pgb = data["host"], data["k6"], data["pgbench"]
    pool, source = planner

    def share(r, w):
        return f"{100 * r[w]['throughput'] / verdicts[w]['best_throughput']:.0f} %"

    def pools(values):
        return ", ".join(str(v) for v in values) or "none"

    def verdict(w):
        v = verdicts[w]
        return (f"{WORKLOADS[w][0]}: best pool **{v['best_pool']}** ({v['best_throughput']:.1f} {WORKLOADS[w][1]}; "
                f"lowest p95 {fmt_ms(v['best_p95_ms'])}); within 5 % of the best throughput and p95 <= 1.1 x the "
                f"lowest: **{pools(v['good'])}**")

    errors = [f"pool {r['pool_size']}: {r[w]['errors']} {w} errors" for r in runs for w in WORKLOADS if r[w]["errors"]]
    crossed = [f"pool {r['pool_size']}: " + ", ".join(f"`{c}`" for c in r["k6"]["crossed"])
               for r in runs if r["k6"].get("crossed")]
    mm_conns = int(data["fixed"]["mattermost MaxOpenConns"]) * len(bm.REPLICAS)
    limits = ", ".join(f"{name.removeprefix(bm.PREFIX + '-')} {c['cpus']:g}" for name, c in data["containers"].items())
    lines = [
        "## Pool size sweep",
        "",
        "<!-- Generated by tools/pool_sweep.py from its JSON (see Command); do not edit. -->",
        "",
        f"- **Command:** `{data['command']}` (raw results: `{data_path}`; this section and the plot again without "
        f"running: `.venv/bin/python tools/pool_sweep.py --render-only {data_path}`)",
        f"- **Date:** {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC "
        f"({(finished - started).total_seconds() / 60:.1f} min in all: converge {data['converge_seconds']:.0f} s, "
        f"pgbench initialisation {data['pgbench_init_seconds']:.0f} s, a k6 warm-up, then "
        + (f"{data['rounds']} rounds over the pool sizes, alternately ascending and descending"
           if data.get("rounds", 1) > 1 else "the pool sizes in the order of the table")
        + ", each k6 first, then pgbench).",
        f"- **Host:** {host['cpus']} CPU cores ({host['cpu_model']}), {host['memory_gb']:.0f} GB RAM, Docker "
        f"{host['docker']}. The stack, k6, Ansible and pgbench all share these {host['cpus']} cores. Container CPU "
        f"limits as planned for the 2 vCPU / 4 GB lab host: {limits}.",
        "- **One stack, one run:** the lab stack of `tests/integration/loadtest/play.yml`, converged once. Fixed "
        "for the whole sweep so that the pool is the only limit: "
        + ", ".join(f"{k} `{v}`" for k, v in data["fixed"].items() if k.startswith(("postgres", "pgbouncer")))
        + " (PostgreSQL restarted once, before the sweep). Per pool size, `default_pool_size` was written into "
        "pgbouncer.ini and PgBouncer reloaded (SIGHUP), then read back with `SHOW CONFIG` before the runs "
        "(column *SHOW CONFIG*).",
        f"- **k6:** the `benchmark` scenario (`loadtest/benchmark.js` via `playbooks/loadtest.yml`), {k6['vus']} "
        f"VUs for {k6['duration']} per pool size through Nginx on loopback; the accounts were seeded once by a "
        "warm-up run before the sweep. Throughput is k6's `http_reqs` rate (ramps included), p95/p50 are "
        "`http_req_duration` over all requests, errors `http_req_failed`. Its database clients are the three "
        f"Mattermost test-double replicas with MaxOpenConns {data['fixed']['mattermost MaxOpenConns']} each, so at "
        f"most {mm_conns} clients reach PgBouncer: pools above {mm_conns} cannot differ for this workload.",
        f"- **pgbench:** TPC-B (built-in script), scale {pgb['scale']}, {pgb['clients']} clients, "
        f"{pgb['threads']} threads, `-T {pgb['seconds']}`, `-M {pgb['protocol']}`, through PgBouncer (transaction "
        "mode) to its own database `pgbench`, initialised once directly against PostgreSQL. It ran by `docker exec` "
        f"in a helper container `{pgb['container']}` (the lab PostgreSQL image, no CPU limit) on the stack network, "
        "so it competes with the stack for the same cores. Throughput is pgbench's tps (without initial connection "
        "time); p50/p95 are exact nearest-rank percentiles over every transaction's latency in pgbench's "
        "per-transaction log (`-l`), PgBouncer queueing included.",
        "",
        "| pool size | SHOW CONFIG | k6 req/s | k6 p95 | pgbench tps | pgbench p95 | k6 % of best | "
        "pgbench % of best |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['pool_size']}{' (planner)' if r['pool_size'] == pool else ''} "
          f"| {r['show_config']['default_pool_size']} | {r['k6']['throughput']:.1f} | {fmt_ms(r['k6']['p95_ms'])} "
          f"| {r['pgbench']['throughput']:.0f} | {fmt_ms(r['pgbench']['p95_ms'])} | {share(r, 'k6')} "
          f"| {share(r, 'pgbench')} |" for r in runs],
        "",
        f"![Throughput and p95 latency against PgBouncer's default_pool_size, k6 and pgbench]({image})",
        "",
        "### Reading the sweep",
        "",
        f"- {verdict('k6')}.",
        f"- {verdict('pgbench')}.",
        f"- Both workloads: **{pools(both)}**.",
        f"- The capacity planner ({source}, imported when this section was rendered) picks "
        f"`default_pool_size` **{pool}** for the lab host (2 vCPU, 4096 MB, 100 users, 3 replicas): "
        + ("within the criterion for both workloads." if pool in both else "within the criterion for "
           + (" and ".join(name for w, (name, _) in WORKLOADS.items() if pool in verdicts[w]["good"])
              or "neither workload") + "."),
        f"- Errors: {'; '.join(errors) if errors else 'none in any run'}. k6 thresholds crossed (latency, not "
        f"errors): {'; '.join(crossed) if crossed else 'none'}.",
        f"- {noise(data)}",
        "",
        "| pool size | k6 p50 | k6 requests | k6 errors | pgbench p50 | pgbench transactions | pgbench failed "
        "| server connections (max, k6 / pgbench) | clients waiting (max, k6 / pgbench) | load before (k6 / pgbench) "
        "| CPU of other jobs, cores (k6 / pgbench) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['pool_size']} | {fmt_ms(r['k6']['p50_ms'])} | {r['k6']['requests']} | {r['k6']['errors']} "
          f"| {fmt_ms(r['pgbench']['p50_ms'])} | {r['pgbench']['requests']} | {r['pgbench']['errors']} "
          f"| {r['k6']['max']['sv_total']} / {r['pgbench']['max']['sv_total']} "
          f"| {r['k6']['max']['cl_waiting']} / {r['pgbench']['max']['cl_waiting']} "
          f"| {r['k6']['load_before'][0]:.1f} / {r['pgbench']['load_before'][0]:.1f} "
          f"| {cores(r['k6'])} / {cores(r['pgbench'])} |" for r in runs],
        "",
        "Server connections and clients waiting: PgBouncer's `SHOW POOLS` for the workload's database "
        "(`mattermost` or `pgbench`), sampled twice a second during the run. Load before: the 1-minute load "
        "average just before the run (this benchmark's own previous run counts in it). CPU of other jobs: the "
        "host's busy CPU time during the run (`/proc/stat`) minus this benchmark's own (its containers' cgroups, its "
        "docker-proxy, the tool and its children: Ansible, k6, the docker CLI), per second of the run; what is "
        "left is other jobs on the machine plus dockerd and kernel work not charged to a container (about 0.1 "
        "core with nothing else running).",
    ]
    return "\n".join(lines)


def write(data, args, planner):
    output, plot_path = Path(args.output), Path(args.plot)
    image = os.path.relpath(plot_path, output.parent)
    data_path = os.path.relpath(Path(args.render_only or args.data).resolve(), bm.ROOT)
    plot(data, plot_path, planner[0])
    bm.write_report(output, sweep=render(data, data_path, image, planner))
    bm.log(f"wrote {output} and {plot_path}")
