# -*- coding: utf-8 -*-
# Copyright: (c) 2026, mattermost_ops.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The capacity model: stack_plan and stack_plan_check (docs/capacity-model.md).

Plain Python without Ansible imports, so the filter plugin, the roles' checks (through the filter)
and tools/ share one implementation. Source tags, cited in full in the model: [MM-docs] [MM-cloud]
[PG-wiki] [PG-docs] [PgB-docs] [LT-ng] [nginx] [pg-exp] [Go] [bench]; [assume] marks our assumptions.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping


class PlanError(ValueError):
    """Bad input, or no plan that works; the message names the field, the value and what would work."""


POOL_MODES = ("transaction", "session")

# Load, Little's law L = lambda x W.
ACTION_INTERVAL_S = 20.0  # [LT-ng] simulcontroller AvgIdleTimeMs default 20000: one action per 20 s
REQUESTS_PER_ACTION = 5  # [assume] API requests behind one user action
PEAK_FACTOR = 2.0  # [assume] busy-hour rate over the mean rate
DB_SECONDS_PER_REQUEST = 0.05  # [assume] W: time one request holds a database connection
Z_PEAK = 3.0  # M/G/inf: busy connections ~ Poisson(L); L + 3 sqrt(L) is about the 99.9th percentile
MIN_OPEN_CONNS = 10  # [assume] floor for user-independent work (job scheduler, plugins)
MAX_OPEN_CONNS = 100  # [MM-docs] v11 default MaxOpenConns: the ceiling per replica

# Server side.
DB_CPU_SHARE = 0.5  # [assume] co-located: PostgreSQL gets about half the cores, the app tier the rest
CONNS_PER_DB_CORE = 2  # [PG-wiki] busy pool = (2 x cores) + effective spindles
EFFECTIVE_SPINDLES = 6  # [bench] a virtual disk overlaps commits: calibrated by the pool-size sweep
RESERVE_MIN = 10  # [MM-cloud] reserve_pool_size 10-20
RESERVE_MAX = 20  # [MM-cloud]
RESERVE_POOL_TIMEOUT_S = 1  # [MM-cloud]
GRAFANA_CONNS = 2  # [assume] max open conns of Grafana's read-only datasource (Grafana's default: 100)
MIN_POOL_SIZE = 2  # [assume] warm server connections per pair; <= GRAFANA_CONNS keeps Grafana in budget
PGBOUNCER_EXPORTER_CONNS = 1  # [PgB-docs] admin console: a client, never a server connection
POSTGRES_EXPORTER_CONNS = 2  # [pg-exp] legacy and collector code paths, SetMaxOpenConns(1) each
DIRECT_CLIENTS = {  # [assume] jobs of this collection that bypass PgBouncer: connections, why
    "backup": (1, "pg_dump without -j uses one connection."),
    "archive": (1, "The archive job runs one psql session."),
    "admin": (2, "An interactive psql plus a one-off pg_restore or maintenance command."),
}
SUPERUSER_RESERVED = 3  # [PG-docs] superuser_reserved_connections default

# Timeouts.
QUERY_TIMEOUT_S = 30  # [MM-docs] SqlSettings.QueryTimeout default
CONN_MAX_LIFETIME_MS = 3_600_000  # [MM-docs] SqlSettings.ConnMaxLifetimeMilliseconds default
CONN_MAX_IDLE_MS = 300_000  # [MM-docs] SqlSettings.ConnMaxIdleTimeMilliseconds default
QUERY_WAIT_TIMEOUT_S = QUERY_TIMEOUT_S // 2  # decision: PgBouncer reports starvation before the app gives up

# Memory, MiB.
OS_RESERVE_MIN_MB = 512  # [assume] kernel, dockerd, containerd, sshd, journald
OS_RESERVE_SHARE = 0.10  # [assume] grows with the host (page tables, slab)
SIZING_STEP_MB = 256  # settings are sized from a multiple of this no larger than the host (monotone fit)
SIZING_MIN_MB = 512
SHARED_BUFFERS_SHARE = 1 / 16  # [MM-docs] "about 20 % of RAM or less" on a co-located host: less
SHARED_BUFFERS_MIN_MB = 128  # [PG-docs] default
WORK_MEM_MIN_MB = 4  # [PG-docs] default
WORK_MEM_MAX_MB = 16  # [MM-docs] small-host suggestion
WORK_MEM_PER_HOST_MB = 1024  # work_mem = host / 1024: 4 MB on 4 GB, 16 MB from 16 GB
HASH_MEM_MULTIPLIER = 2.0  # [PG-docs] default since 15: a hash table may use 2 x work_mem
MAINT_MIN_MB = 64  # [PG-docs] maintenance_work_mem default
MAINT_MAX_MB = 1024  # [assume] ample for Mattermost's index builds
AUTOVACUUM_WORKERS = 3  # [PG-docs] autovacuum_max_workers default; each may use autovacuum_work_mem
SHM_MB = 128  # [assume] /dev/shm of the PostgreSQL container (Docker's default 64): parallel query's shared memory
DOCKER_SHM_MB = 64  # [Docker] --shm-size default, what a container has when nothing sets it
BACKEND_MB = 5  # [assume] private memory of one PostgreSQL backend
MM_BASE_MB = 384  # [assume] one replica without plugins, idle
MM_PER_1000_USERS_MB = 1600  # [MM-docs] 1-1000 users: 2 GB for the app -> 384 + 1600 ~ 2 GB
PLUGIN_MB = 96  # [assume] one server plugin: a separate process in the replica's container, outside GOMEMLIMIT
GOMEMLIMIT_SHARE = 0.90  # [Go][MM-docs] soft limit, leave 5-10 % headroom
NGINX_BASE_MB = 48  # [assume] master + workers
NGINX_KB_PER_USER = 64  # [nginx] proxy_buffer_size 16k: 2 connections x (in + out) per user
PGBOUNCER_BASE_MB = 16  # [assume] process and pools
PGBOUNCER_KB_PER_CLIENT = 8  # [PgB-docs] pkt_buf 4 KiB, in and out, per client socket
ROUND_MB = 32  # container limits are rounded up to this

# CPU: compressible, so the sum of all limits may exceed the host (docs/capacity-model.md).
MM_MIN_CPUS = 0.5  # [assume] smallest useful replica
MM_USERS_PER_VCPU = 1000  # [MM-docs] 1-1000 users: 1 vCPU for the application
SINGLE_CPU = 1.0  # PgBouncer is single-threaded; Nginx needs no more at this scale

# Optional services: memory limit (MiB), cpus, why. [assume] small-lab budgets; measure and adjust.
OPTIONAL_SERVICES = {
    "prometheus": (256, 0.5, "about 20 scrape targets every 15 s with short local retention"),
    "alertmanager": (32, 0.1, "a handful of alerts and one webhook receiver"),
    "grafana": (160, 0.5, "a few dashboards and users, SQLite state"),
    "loki": (192, 0.5, "single-binary Loki with small ingestion and query limits"),
    "alloy": (128, 0.25, "tails the Docker logs and ships them to Loki"),
    "cadvisor": (96, 0.25, "per-container metrics, housekeeping every 15 s"),
    "node_exporter": (32, 0.1, "host metrics"),
    "postgres_exporter": (32, 0.1, "one PostgreSQL connection, default collectors"),
    "pgbouncer_exporter": (16, 0.1, "one admin-console connection"),
    "nginx_exporter": (16, 0.1, "reads stub_status"),
    "blackbox_exporter": (32, 0.1, "a few HTTP and TCP probes"),
}
CORE_CONTAINERS = ("postgres", "pgbouncer", "mattermost", "nginx")

# The interface: sections of a plan and their keys, in order (then containers, memory, rationale, violations).
KEY_ORDER = {
    "postgres": ("max_connections", "superuser_reserved_connections", "shared_buffers_mb",
                 "effective_cache_size_mb", "work_mem_mb", "hash_mem_multiplier", "maintenance_work_mem_mb",
                 "autovacuum_work_mem_mb", "shm_size_mb"),
    "pgbouncer": ("pool_mode", "max_client_conn", "default_pool_size", "min_pool_size", "reserve_pool_size",
                  "reserve_pool_timeout", "max_db_connections", "query_wait_timeout", "server_idle_timeout",
                  "server_lifetime"),
    "mattermost": ("replicas", "MaxOpenConns", "MaxIdleConns", "ConnMaxLifetimeMilliseconds",
                   "ConnMaxIdleTimeMilliseconds", "QueryTimeout", "GOMAXPROCS", "GOMEMLIMIT", "memory_mb",
                   "plugin_memory_mb", "cpus"),
    "db_load": ("steady_busy", "peak_busy"),
    "direct_clients": ("postgres_exporter", *DIRECT_CLIENTS, "grafana"),
    "pgbouncer_other_clients": ("pgbouncer_exporter", "grafana"),
}
MEMORY_KEYS = ("host_mb", "sized_for_mb", "containers_total_mb", "os_reserve_mb", "free_mb")
# What an operator may override (stack_plan's overrides), by section; containers take memory_mb and cpus.
OVERRIDABLE = {"postgres": KEY_ORDER["postgres"], "pgbouncer": KEY_ORDER["pgbouncer"],
               "mattermost": tuple(k for k in KEY_ORDER["mattermost"] if k not in ("replicas", "plugin_memory_mb"))}
TEXT_KEYS = ("pool_mode", "GOMEMLIMIT")


def _fail(prefix, field, value, expected):
    raise PlanError(f"{prefix}: {field}={value!r} is invalid; {expected}")


def _number(field, value, expected, integer=False, prefix="stack_plan"):
    """An int or float from a number or a numeric string; bool, None and text are rejected."""
    number = value
    if isinstance(value, str):
        for convert in (int, float):
            try:
                number = convert(value.strip())
                break
            except ValueError:
                continue
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        _fail(prefix, field, value, expected)
    if number == int(number):
        return int(number)
    if integer:
        _fail(prefix, field, value, expected)
    return float(number)


def _pool_mode(field, value, prefix):
    mode = value.strip().lower() if isinstance(value, str) else value
    if mode not in POOL_MODES:
        _fail(prefix, field, value, f"use one of: {', '.join(POOL_MODES)} (any case)")
    return mode


def _inputs(users, replicas, vcpus, memory_mb, pool_mode, services, plugins):
    inp = {}
    for field, value, integer, low, hint in (
            ("users", users, True, 1, "an integer > 0 (active users), e.g. 100"),
            ("replicas", replicas, True, 1, "an integer >= 1, e.g. replicas=1"),
            ("vcpus", vcpus, False, 1, "a number >= 1, e.g. vcpus=2"),
            ("memory_mb", memory_mb, True, 1, "an integer > 0 (MiB), e.g. 4096"),
            ("plugins", plugins, True, 0, "an integer >= 0 (server plugins enabled on each replica), e.g. 0")):
        inp[field] = _number(field, value, f"use {hint}", integer)
        if inp[field] < low:
            _fail("stack_plan", field, value, f"use {hint}")
    inp["pool_mode"] = _pool_mode("pool_mode", pool_mode, "stack_plan")
    valid = f"use a list of names from: {', '.join(OPTIONAL_SERVICES)}"
    if isinstance(services, (str, Mapping)) or not hasattr(services, "__iter__"):
        _fail("stack_plan", "services", services, valid)
    services = list(services)
    for name in services:
        if not isinstance(name, str) or name not in OPTIONAL_SERVICES:
            _fail("stack_plan", "services", name, valid)
    inp["services"] = [name for name in OPTIONAL_SERVICES if name in services]
    return {key: inp[key] for key in ("users", "replicas", "vcpus", "memory_mb", "pool_mode", "services", "plugins")}


def _round_up(value, step=ROUND_MB):
    return int(math.ceil(value / step) * step)


class _Plan(dict):
    """Values keyed by dotted path ("postgres.max_connections"), plus one rationale sentence for each."""

    def __init__(self):
        super().__init__()
        self.why = {}

    def put(self, path, value, why):
        self[path], self.why[path] = value, why
        return value

    def total(self, section):
        return sum(value for path, value in self.items() if path.startswith(section + "."))


def db_load(users):
    """(steady, peak) busy database connections for USERS: Little's law at the mean and at the peak rate."""
    steady = users * REQUESTS_PER_ACTION / ACTION_INTERVAL_S * DB_SECONDS_PER_REQUEST
    return steady, steady * PEAK_FACTOR


def busy_pool(vcpus):
    """The transaction-mode server pool for a host of VCPUS (docs/capacity-model.md section 3)."""
    return math.ceil(CONNS_PER_DB_CORE * vcpus * DB_CPU_SHARE) + EFFECTIVE_SPINDLES


def _client_side(p, inp):
    """Mattermost's pool (Little's law) and PgBouncer's client limit."""
    users, replicas, services = inp["users"], inp["replicas"], inp["services"]
    steady, peak = db_load(users)
    p.put("db_load.steady_busy", round(steady, 4), f"Little's law: {users} users x "
          f"{REQUESTS_PER_ACTION / ACTION_INTERVAL_S:g} req/s x {DB_SECONDS_PER_REQUEST} s held per request.")
    p.put("db_load.peak_busy", round(peak, 4), f"The steady load x {PEAK_FACTOR:g} (busy hour).")
    busy = peak / replicas
    want = math.ceil(busy + Z_PEAK * math.sqrt(busy))
    moc = p.put("mattermost.MaxOpenConns", min(MAX_OPEN_CONNS, max(MIN_OPEN_CONNS, want)),
                f"Peak L {peak:g} / {replicas} replica(s) = {busy:.2f}; L + 3 sqrt(L) = {want}, kept within "
                f"{MIN_OPEN_CONNS}-{MAX_OPEN_CONNS}.")
    p.put("mattermost.MaxIdleConns", max(1, moc // 2), "Half of MaxOpenConns, as Mattermost's defaults 100/50.")
    p.put("mattermost.replicas", replicas, "As requested; unlicensed replicas are not a cluster.")
    p.put("mattermost.ConnMaxLifetimeMilliseconds", CONN_MAX_LIFETIME_MS, "Mattermost default (1 h).")
    p.put("mattermost.ConnMaxIdleTimeMilliseconds", CONN_MAX_IDLE_MS, "Mattermost default (5 min).")
    p.put("mattermost.QueryTimeout", QUERY_TIMEOUT_S, "Mattermost default, in seconds.")
    p.put("pgbouncer_other_clients.pgbouncer_exporter", PGBOUNCER_EXPORTER_CONNS * ("pgbouncer_exporter" in services),
          "pgbouncer_exporter's admin-console connection (0 when it does not run); no server connection.")
    p.put("pgbouncer_other_clients.grafana", GRAFANA_CONNS * ("grafana" in services), "Grafana's read-only "
          f"datasource goes through PgBouncer, capped at {GRAFANA_CONNS} connections (0 when Grafana does not run).")
    others = p.total("pgbouncer_other_clients")
    p.put("pgbouncer.max_client_conn", max(100, _round_up(replicas * moc + others, 50)),
          f"{replicas} x {moc} Mattermost + {others} other clients, rounded up to 50, at least PgBouncer's default "
          "100: room for a migration job or a restart overlap.")


def _server_side(p, inp):
    """PgBouncer's server pools and PostgreSQL's max_connections."""
    mode, replicas, services = inp["pool_mode"], inp["replicas"], inp["services"]
    clients, graf = replicas * p["mattermost.MaxOpenConns"], p["pgbouncer_other_clients.grafana"]
    p.put("pgbouncer.pool_mode", mode, "Transaction mode multiplexes (the Mattermost DSN needs "
          "binary_parameters=yes); session mode pins one server connection per client.")
    if mode == "transaction":
        busy = busy_pool(inp["vcpus"])
        pool = p.put("pgbouncer.default_pool_size", min(busy, clients), f"(2 x {inp['vcpus']:g} cores x "
                     f"{DB_CPU_SHARE:g} PostgreSQL's share) + {EFFECTIVE_SPINDLES} effective spindles = {busy} "
                     f"(PostgreSQL wiki, calibrated by the pool-size sweep), at most the {clients} clients.")
        reserve = p.put("pgbouncer.reserve_pool_size", min(RESERVE_MAX, max(RESERVE_MIN, 2 * pool)),
                        "Twice the pool within Mattermost cloud's 10-20, for the peak and for slow queries.")
    else:
        pool = p.put("pgbouncer.default_pool_size", clients, f"Session mode: one server connection per client, "
                     f"{replicas} x {p['mattermost.MaxOpenConns']}.")
        reserve = p.put("pgbouncer.reserve_pool_size", 0, "Nobody waits when the pool covers every client.")
    p.put("pgbouncer.min_pool_size", min(pool, MIN_POOL_SIZE), "Warm connections per pair, within Grafana's budget.")
    p.put("pgbouncer.reserve_pool_timeout", RESERVE_POOL_TIMEOUT_S, "Mattermost cloud's value, in seconds.")
    graf_pair = min(pool + reserve, graf)
    max_db = p.put("pgbouncer.max_db_connections", pool + reserve + graf_pair,
                   f"Mattermost pair {pool} + {reserve} reserve, Grafana pair {graf_pair}: both use the mattermost "
                   "database entry, so this caps them together.")
    p.put("pgbouncer.query_wait_timeout", QUERY_WAIT_TIMEOUT_S, f"Half of QueryTimeout {QUERY_TIMEOUT_S} s: a "
          "starved client gets PgBouncer's error before Mattermost abandons the query.")
    p.put("pgbouncer.server_idle_timeout", CONN_MAX_IDLE_MS // 1000, "Matches ConnMaxIdleTime.")
    p.put("pgbouncer.server_lifetime", CONN_MAX_LIFETIME_MS // 1000, "Matches ConnMaxLifetime.")
    p.put("direct_clients.postgres_exporter", POSTGRES_EXPORTER_CONNS * ("postgres_exporter" in services),
          "postgres_exporter's two code paths hold one connection each (0 when it does not run).")
    for name, (conns, why) in DIRECT_CLIENTS.items():
        p.put(f"direct_clients.{name}", conns, why)
    p.put("direct_clients.grafana", 0, "Grafana goes through PgBouncer (pgbouncer_other_clients), never directly.")
    direct = p.total("direct_clients")
    p.put("postgres.superuser_reserved_connections", SUPERUSER_RESERVED, "PostgreSQL default.")
    p.put("postgres.max_connections", max_db + direct + SUPERUSER_RESERVED, f"{max_db} PgBouncer server "
          f"connections + {direct} direct clients + {SUPERUSER_RESERVED} superuser slots: every slot accounted for.")


def _cpus(p, inp):
    """CPU limits; the replicas together never exceed the host."""
    vcpus, replicas, users = inp["vcpus"], inp["replicas"], inp["users"]
    need = max(replicas * MM_MIN_CPUS, users / MM_USERS_PER_VCPU)
    if vcpus < need:
        fewer = f" or replicas <= {int(vcpus // MM_MIN_CPUS)}" if vcpus >= users / MM_USERS_PER_VCPU else ""
        raise PlanError(
            f"stack_plan: vcpus={vcpus} is too few for {users} users on {replicas} replica(s); use vcpus >= "
            f"{math.ceil(need * 100) / 100:g} ({MM_MIN_CPUS} per replica, 1 per {MM_USERS_PER_VCPU} users){fewer}.")
    cpus = p.put("mattermost.cpus", math.floor(vcpus * 100 / replicas + 1e-9) / 100,
                 f"{vcpus} vCPUs split between {replicas} replica(s): together they never exceed the host.")
    p.put("mattermost.GOMAXPROCS", max(1, min(int(vcpus), int(cpus))),
          "The replica's CPU limit rounded down, at least 1: no more runnable threads than its quota.")
    limits = {"postgres": (float(vcpus), "The whole host; its busy pool bounds its concurrency."),
              "pgbouncer": (SINGLE_CPU, "Single-threaded."), "mattermost": (cpus, "As mattermost.cpus."),
              "nginx": (SINGLE_CPU, "Proxying at this scale needs at most one CPU.")}
    for name in inp["services"]:
        limits[name] = (OPTIONAL_SERVICES[name][1], "A small share; CPU is compressible.")
    for name, (value, why) in limits.items():
        p.put(f"containers.{name}.cpus", value, why)


def postgres_need_mb(sb, shm, maint, autovac, work, hash_mult, conns):
    """Memory the PostgreSQL container may use: shared memory, maintenance, autovacuum, backends."""
    return (sb + shm + maint + AUTOVACUUM_WORKERS * autovac
            + conns * (work * hash_mult + BACKEND_MB) + AUTOVACUUM_WORKERS * BACKEND_MB)


def _memory(p, inp, host, sizing):
    """PostgreSQL memory settings (sized for SIZING MB), container limits and the budget of HOST MB."""
    users, replicas, conns = inp["users"], inp["replicas"], p["postgres.max_connections"]
    sized = "" if sizing == host else f" (sized for {sizing} MB so that the plan fits {host} MB)"
    sb = p.put("postgres.shared_buffers_mb", max(SHARED_BUFFERS_MIN_MB, int(sizing * SHARED_BUFFERS_SHARE)),
               f"1/16 of host memory{sized}: under the 20 % ceiling because PostgreSQL shares the host.")
    work = p.put("postgres.work_mem_mb", max(WORK_MEM_MIN_MB, min(WORK_MEM_MAX_MB, sizing // WORK_MEM_PER_HOST_MB)),
                 f"Host / {WORK_MEM_PER_HOST_MB} within {WORK_MEM_MIN_MB}-{WORK_MEM_MAX_MB} MB{sized}: every "
                 "connection's hash table (work_mem x hash_mem_multiplier) fits the container.")
    hmm = p.put("postgres.hash_mem_multiplier", HASH_MEM_MULTIPLIER, "PostgreSQL's default, set explicitly "
                "because the container limit counts it.")
    maint = p.put("postgres.maintenance_work_mem_mb", max(MAINT_MIN_MB, min(MAINT_MAX_MB, sizing // 64)),
                  f"1/64 of host memory within {MAINT_MIN_MB}-{MAINT_MAX_MB} MB{sized}.")
    autovac = p.put("postgres.autovacuum_work_mem_mb", maint, f"As maintenance_work_mem (PostgreSQL's -1), set "
                    f"explicitly: each of {AUTOVACUUM_WORKERS} autovacuum workers may use it.")
    shm = p.put("postgres.shm_size_mb", SHM_MB, "The container's /dev/shm (parallel query's dynamic shared memory); "
                "tmpfs pages count against the container's memory limit.")
    need = postgres_need_mb(sb, shm, maint, autovac, work, hmm, conns)
    pg_mb = _round_up(need)
    p.put("postgres.effective_cache_size_mb", int(pg_mb - (need - sb - conns * work * hmm)),
          "What the container can cache: its limit minus memory that is never cache (maintenance, autovacuum, "
          "/dev/shm, backends); a planner hint, not an allocation.")
    plugin_mb = p.put("mattermost.plugin_memory_mb", inp["plugins"] * PLUGIN_MB,
                      f"{inp['plugins']} server plugin(s) x {PLUGIN_MB} MB: each is a process of its own, outside "
                      "GOMEMLIMIT (0: the prepackaged plugins are not installed).")
    per_replica = math.ceil(users / replicas)
    main_mb = MM_BASE_MB + per_replica * MM_PER_1000_USERS_MB / 1000
    mm_mb = _round_up(main_mb + plugin_mb)
    limits = {
        "postgres": (pg_mb, f"{sb} shared_buffers + {shm} /dev/shm + {maint} maintenance + "
                     f"{AUTOVACUUM_WORKERS} x {autovac} autovacuum + {conns} x ({work} work_mem x {hmm:g} + "
                     f"{BACKEND_MB}) + {AUTOVACUUM_WORKERS} worker backends x {BACKEND_MB} MB."),
        "pgbouncer": (_round_up(PGBOUNCER_BASE_MB + p["pgbouncer.max_client_conn"] * PGBOUNCER_KB_PER_CLIENT / 1024),
                      f"{PGBOUNCER_BASE_MB} MB + {PGBOUNCER_KB_PER_CLIENT} KiB of packet buffers per allowed client."),
        "mattermost": (mm_mb, f"Per replica: {MM_BASE_MB} MB + 1.6 MB x {per_replica} users (1000 users ~ 2 GB) "
                       f"+ {plugin_mb} MB of plugins."),
        "nginx": (_round_up(NGINX_BASE_MB + users * NGINX_KB_PER_USER / 1024),
                  f"{NGINX_BASE_MB} MB + {NGINX_KB_PER_USER} KiB of proxy buffers per active user."),
    }
    for name in inp["services"]:
        limits[name] = (OPTIONAL_SERVICES[name][0], OPTIONAL_SERVICES[name][2])
    for name, (mb, why) in limits.items():
        p.put(f"containers.{name}.memory_mb", mb, why)
    p.put("mattermost.memory_mb", mm_mb, "Per replica, as containers.mattermost.memory_mb.")
    p.put("mattermost.GOMEMLIMIT", f"{math.ceil((mm_mb - plugin_mb) * GOMEMLIMIT_SHARE)}MiB", "90 % of what the "
          "main process may use (the replica's limit minus its plugins): headroom for non-heap memory.")
    p.put("memory.host_mb", host, "As given: inside a container the facts show the machine, not the limit.")
    p.put("memory.sized_for_mb", sizing, f"PostgreSQL's settings are sized from this multiple of {SIZING_STEP_MB} "
          "MB, the largest that lets every limit fit: a bigger host never fails where a smaller one fits.")
    _memory_totals(p, replicas, host)


def _memory_totals(p, replicas, host):
    containers = {path.split(".")[1] for path in p if path.startswith("containers.")}
    total = sum(p[f"containers.{name}.memory_mb"] for name in containers) + \
        (replicas - 1) * p["containers.mattermost.memory_mb"]
    reserve = max(OS_RESERVE_MIN_MB, math.ceil(host * OS_RESERVE_SHARE))
    p.put("memory.containers_total_mb", total, f"Sum of all limits, {replicas} Mattermost replica(s) included.")
    p.put("memory.os_reserve_mb", reserve, "max(512 MB, 10 %): kernel, dockerd, containerd, sshd, page cache.")
    p.put("memory.free_mb", host - total - reserve, "What is left after limits and the OS reserve.")


def _build(inp, host, sizing):
    p = _Plan()
    for part in (_client_side, _server_side, _cpus):
        part(p, inp)
    _memory(p, inp, host, sizing)
    return p


def _sizings(host):
    top = max(SIZING_MIN_MB, host // SIZING_STEP_MB * SIZING_STEP_MB)
    return range(top, SIZING_MIN_MB - 1, -SIZING_STEP_MB)


def _fitting_build(inp, host, overrides):
    """The plan for HOST with the largest sizing that fits after OVERRIDES, else the smallest sizing."""
    smallest = _apply(_build(inp, host, SIZING_MIN_MB), overrides, inp, host)
    if smallest["memory.free_mb"] < 0:
        return smallest
    for sizing in _sizings(host):
        p = _apply(_build(inp, host, sizing), overrides, inp, host)
        if p["memory.free_mb"] >= 0:
            return p
    return smallest


def _min_fitting_mb(inp, overrides):
    """Smallest multiple of ROUND_MB above memory_mb that fits (fit is monotone in the host's memory)."""
    low = inp["memory_mb"] // ROUND_MB
    p = _apply(_build(inp, inp["memory_mb"], SIZING_MIN_MB), overrides, inp, inp["memory_mb"])
    high = _round_up((p["memory.containers_total_mb"] + OS_RESERVE_MIN_MB) / (1 - OS_RESERVE_SHARE)) // ROUND_MB
    high = max(high, low + 1)
    while high - low > 1:
        mid = (low + high) // 2
        if _fitting_build(inp, mid * ROUND_MB, overrides)["memory.free_mb"] >= 0:
            high = mid
        else:
            low = mid
    return high * ROUND_MB


# overrides -------------------------------------------------------------------------------------------
def _overrides(overrides):
    """Validated {path: value} from {section: {key: value}}; containers take {name: {memory_mb, cpus}}."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        _fail("stack_plan", "overrides", overrides, "use a dict such as {'pgbouncer': {'default_pool_size': 8}}")
    out = {}
    for section, values in overrides.items():
        sections = (*OVERRIDABLE, "containers")
        if section not in sections or not isinstance(values, Mapping):
            _fail("stack_plan", f"overrides.{section}", values, f"use a dict under one of: {', '.join(sections)}")
        for key, value in values.items():
            if section == "containers":
                if key not in (*CORE_CONTAINERS, *OPTIONAL_SERVICES) or not isinstance(value, Mapping) or \
                        not set(value) <= {"memory_mb", "cpus"}:
                    _fail("stack_plan", f"overrides.containers.{key}", value,
                          "use {memory_mb: N, cpus: X} for a container of the plan")
                for field, number in value.items():
                    out[f"containers.{key}.{field}"] = _number(
                        f"overrides.containers.{key}.{field}", number, "use a number > 0", field == "memory_mb")
                continue
            path = f"{section}.{key}"
            if key not in OVERRIDABLE[section]:
                _fail("stack_plan", f"overrides.{path}", value, f"use one of: {', '.join(OVERRIDABLE[section])}")
            if key == "pool_mode":
                out[path] = _pool_mode(f"overrides.{path}", value, "stack_plan")
            elif key == "GOMEMLIMIT":
                _gomemlimit_mib(f"overrides.{path}", value)
                out[path] = str(value).strip()
            else:
                number = _number(f"overrides.{path}", value, "use a number")
                out[path] = float(number) if key in ("cpus", "hash_mem_multiplier") else number
    for name in ("memory_mb", "cpus"):  # mattermost.X and containers.mattermost.X are one setting
        if f"mattermost.{name}" in out:
            out.setdefault(f"containers.mattermost.{name}", out[f"mattermost.{name}"])
        if f"containers.mattermost.{name}" in out:
            out.setdefault(f"mattermost.{name}", out[f"containers.mattermost.{name}"])
    return out


def _apply(p, overrides, inp, host):
    allowed = (*CORE_CONTAINERS, *inp["services"])
    for path, value in overrides.items():
        if path.startswith("containers.") and path.split(".")[1] not in allowed:
            _fail("stack_plan", f"overrides.{path.rsplit('.', 1)[0]}", value,
                  f"that service is not in services ({', '.join(inp['services']) or 'none'})")
        p.put(path, value, "Overridden by the operator (stack_plan_overrides); checked like a planned value.")
    if overrides:
        _memory_totals(p, inp["replicas"], host)
    return p


# stack_plan -------------------------------------------------------------------------------------------
def _remedies(inp, overrides, plan):
    """What would fit, for the rules that depend on the plan's inputs."""
    rules = {v["rule"] for v in plan["violations"]}
    hints = []
    if rules & {"server_steady", "server_peak"}:
        steady, _peak = db_load(inp["users"])
        need = max(steady, _peak - RESERVE_MAX)  # the pool that carries both, as busy_pool(vcpus) first reaches it
        start = max(math.ceil(inp["vcpus"]),
                    math.floor((need - EFFECTIVE_SPINDLES) / (CONNS_PER_DB_CORE * DB_CPU_SHARE)) - 1)
        replicas = next(r for r in range(inp["replicas"], inp["replicas"] + 1000)  # one opens <= MAX_OPEN_CONNS
                        if _server_fits(dict(inp, replicas=r, vcpus=1e6), overrides) or r * MAX_OPEN_CONNS > _peak)
        vcpus = next((v for v in range(start, start + 128)
                      if _server_fits(dict(inp, vcpus=v, replicas=replicas), overrides)), None)
        low, high = 0, inp["users"]  # the server fits 0 users and not USERS: bisect for the most that fit
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if _server_fits(dict(inp, users=mid), overrides) else (low, mid)
        load, pgb = plan["db_load"], plan["pgbouncer"]
        pool = math.ceil(max(load["steady_busy"], load["peak_busy"] - pgb["reserve_pool_size"]))
        more = f" and replicas >= {replicas}" if replicas > inp["replicas"] else ""
        hints.append((f"use vcpus >= {vcpus}{more}" if vcpus else "more vCPUs do not help with this pool override")
                     + f", or users <= {low}, or a bigger pool (stack_plan_overrides.pgbouncer.default_pool_size"
                     f" >= {pool}; measure first, docs/benchmarks.md)")
    if "memory_fit" in rules:
        hints.append(f"memory_mb={inp['memory_mb']} is too small: use memory_mb >= {_min_fitting_mb(inp, overrides)}, "
                     "or fewer services or replicas")
    return hints


def _server_fits(inp, overrides):
    """Whether stack_plan_check's server_steady and server_peak rules hold for INP (connection settings only)."""
    p = _Plan()
    _client_side(p, inp)
    _server_side(p, inp)
    nested = {}
    for path, value in [*p.items(), *((k, v) for k, v in overrides.items() if k.startswith("pgbouncer."))]:
        section, key = path.split(".", 1)
        nested.setdefault(section, {})[key] = value
    return not {v["rule"] for v in stack_plan_check(nested)} & {"server_steady", "server_peak"}


def _export(p, inp):
    plan = {"inputs": inp}
    for section, keys in KEY_ORDER.items():
        plan[section] = {key: p[f"{section}.{key}"] for key in keys}
    plan["containers"] = {name: {"memory_mb": p[f"containers.{name}.memory_mb"], "cpus": p[f"containers.{name}.cpus"]}
                          for name in (*CORE_CONTAINERS, *inp["services"])}
    plan["memory"] = {key: p[f"memory.{key}"] for key in MEMORY_KEYS}
    plan["rationale"] = dict(sorted(p.why.items()))
    return plan


def stack_plan(users, replicas=1, vcpus=2, memory_mb=4096, pool_mode="transaction", services=None, plugins=0,
               overrides=None, allow_violations=False):
    """The effective capacity plan for USERS active users: planned values, then OVERRIDES, then the check.

    Raises PlanError on bad input, and on any violation unless ALLOW_VIOLATIONS (then plan['violations'])."""
    inp = _inputs(users, replicas, vcpus, memory_mb, pool_mode, [] if services is None else services, plugins)
    over = _overrides(overrides)
    p = _fitting_build(inp, inp["memory_mb"], over)
    plan = _export(p, inp)
    plan["overrides"] = copy.deepcopy(over)
    plan["violations"] = stack_plan_check(plan)
    plan["remedies"] = _remedies(inp, over, plan) if plan["violations"] else []
    if plan["violations"] and not allow_violations:
        found = "; ".join(f"[{v['rule']}] {v['message']}" for v in plan["violations"])
        hints = "; ".join(plan["remedies"])
        raise PlanError(f"stack_plan: {inp['users']} users, {inp['replicas']} replica(s) on vcpus={inp['vcpus']:g}, "
                        f"memory_mb={inp['memory_mb']}, pool_mode={inp['pool_mode']}, {len(inp['services'])} "
                        f"optional service(s): {found}" + (f". What would fit: {hints}." if hints else "."))
    return plan


# stack_plan_check -------------------------------------------------------------------------------------
GO_UNITS_MIB = {"B": 1 / 1048576, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "TiB": 1048576}


def _find(data, *paths):
    """(path, value) of the first path present in DATA, else (first path, None)."""
    for path in paths:
        node = data
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            return path, node
    return paths[0], None


def _num(data, paths, low=None, positive=False):
    """The number at the first of PATHS (None when absent); below LOW (or <= 0 when POSITIVE) is an error."""
    path, value = _find(data, *paths)
    if value is None:
        return None
    expected = "use a number > 0" if positive else ("use a number" if low is None else f"use a number >= {low:g}")
    number = _number(path, value, expected, prefix="stack_plan_check")
    if (positive and number <= 0) or (low is not None and number < low):
        _fail("stack_plan_check", path, value, expected)
    return number


def _gomemlimit_mib(field, value):
    """Go's GOMEMLIMIT in MiB: digits with an optional unit, or 'off' (no limit: infinity)."""
    text = str(value).strip()
    if text == "off":
        return math.inf
    match = re.fullmatch(r"(\d+)(B|KiB|MiB|GiB|TiB)?", text)
    if not match:
        _fail("stack_plan_check" if not field.startswith("overrides") else "stack_plan", field, value,
              "use a Go size such as '1105MiB' or 'off'")
    return int(match.group(1)) * GO_UNITS_MIB[match.group(2) or "B"]


# The values the rules read: name -> (paths tried in order, lowest valid value or "positive").
CHECK_VALUES = {
    "reps": (("replicas", "mattermost.replicas", "inputs.replicas"), "positive"),
    "vcpus": (("host.vcpus", "inputs.vcpus"), "positive"),
    "host": (("host.memory_mb", "memory.host_mb", "inputs.memory_mb"), "positive"),
    "os": (("memory.os_reserve_mb",), 0), "moc": (("mattermost.MaxOpenConns",), "positive"),
    "idle": (("mattermost.MaxIdleConns",), 0), "qt": (("mattermost.QueryTimeout",), "positive"),
    "procs": (("mattermost.GOMAXPROCS",), None), "mm_cpus": (("mattermost.cpus", "containers.mattermost.cpus"),
                                                             "positive"),
    "mm_mb": (("mattermost.memory_mb", "containers.mattermost.memory_mb"), "positive"),
    "plugin_mb": (("mattermost.plugin_memory_mb",), 0), "mcc": (("pgbouncer.max_client_conn",), "positive"),
    "pool": (("pgbouncer.default_pool_size",), "positive"), "reserve": (("pgbouncer.reserve_pool_size",), 0),
    "min_pool": (("pgbouncer.min_pool_size",), 0), "max_db": (("pgbouncer.max_db_connections",), 0),
    "qwt": (("pgbouncer.query_wait_timeout",), 0), "rpt": (("pgbouncer.reserve_pool_timeout",), 0),
    "sit": (("pgbouncer.server_idle_timeout",), 0), "slt": (("pgbouncer.server_lifetime",), 0),
    "maxc": (("postgres.max_connections",), "positive"), "su": (("postgres.superuser_reserved_connections",), 0),
    "sb": (("postgres.shared_buffers_mb",), "positive"), "work": (("postgres.work_mem_mb",), "positive"),
    "hmm": (("postgres.hash_mem_multiplier",), 1), "maint": (("postgres.maintenance_work_mem_mb",), 1),
    "autovac": (("postgres.autovacuum_work_mem_mb",), None), "cache": (("postgres.effective_cache_size_mb",), 0),
    "shm": (("postgres.shm_size_mb",), 0),
    "pg_mb": (("containers.postgres.memory_mb",), "positive"),
    "steady": (("db_load.steady_busy",), 0), "peak": (("db_load.peak_busy",), 0),
}
ADDENDS = ("os", "reserve", "su", "plugin_mb")  # parts of a sum: 0 when absent
PG_DEFAULTS = {"hmm": HASH_MEM_MULTIPLIER, "maint": MAINT_MIN_MB,  # [PG-docs] what PostgreSQL uses when unset
               "shm": DOCKER_SHM_MB}  # [Docker] what the container gets when unset


def _context(d):
    """Every value the rules use (None when absent) and the sums they compare."""
    c = {name: _num(d, paths, None if low in (None, "positive") else low, low == "positive")
         for name, (paths, low) in CHECK_VALUES.items()}
    c.update({name: c[name] or 0 for name in ADDENDS})
    c.update({name: default if c[name] is None else c[name] for name, default in PG_DEFAULTS.items()})
    if c["autovac"] is None or c["autovac"] == -1:  # [PG-docs] -1: autovacuum uses maintenance_work_mem
        c["autovac"] = c["maint"]
    elif c["autovac"] < 1:
        _fail("stack_plan_check", "postgres.autovacuum_work_mem_mb", c["autovac"], "use -1 or a number >= 1")
    sections = {name: _find(d, name)[1] for name in ("containers", "direct_clients", "pgbouncer_other_clients")}
    sections = {name: node if isinstance(node, Mapping) else {} for name, node in sections.items()}
    counts = {name: {key: _num(d, (f"{name}.{key}",), 0) or 0 for key in sections[name]}
              for name in ("direct_clients", "pgbouncer_other_clients")}
    c["direct"], c["others"] = (sum(counts[name].values()) for name in counts)
    mode = _find(d, "pgbouncer.pool_mode", "inputs.pool_mode")[1]
    c["session"] = mode is not None and _pool_mode("pgbouncer.pool_mode", mode, "stack_plan_check") == "session"
    c["gomem"] = None if _find(d, "mattermost.GOMEMLIMIT")[1] is None else \
        _gomemlimit_mib("mattermost.GOMEMLIMIT", _find(d, "mattermost.GOMEMLIMIT")[1])
    c["pairs"] = 2 if counts["pgbouncer_other_clients"].get("grafana") else 1  # Grafana's pair beside Mattermost's
    # PgBouncer: reserve_pool_timeout 0 disables the reserve; max_db_connections 0 means unlimited.
    c["usable_reserve"] = 0 if c["rpt"] == 0 else c["reserve"]
    if c["pool"] is not None:
        c["server"] = c["pairs"] * (c["pool"] + c["reserve"])
        c["server"] = c["server"] if not c["max_db"] else min(c["server"], c["max_db"])
    if None not in (c["reps"], c["moc"]):
        c["clients"] = c["reps"] * c["moc"]
    containers = sections["containers"]
    if c["vcpus"] is not None:
        cpus = {name: _num(d, (f"containers.{name}.cpus",), positive=True) for name in containers}
        c["hogs"] = ", ".join(f"{n} {x:g}" for n, x in cpus.items() if x is not None and x > c["vcpus"] + 1e-9)
    if (containers or c["mm_mb"] is not None) and (c["mm_mb"] is None or c["reps"] is not None):
        c["others_mb"] = sum(_num(d, (f"containers.{n}.memory_mb",), positive=True) or 0
                             for n in containers if n != "mattermost")
        c["limits_mb"] = c["others_mb"] + (c["reps"] * c["mm_mb"] if c["mm_mb"] is not None else 0)
    if None not in (c["sb"], c["work"], c["maxc"]):
        c["pg_need"] = postgres_need_mb(c["sb"], c["shm"], c["maint"], c["autovac"], c["work"], c["hmm"], c["maxc"])
    if c["mm_mb"] is not None:
        c["main_mb"] = c["mm_mb"] - c["plugin_mb"]
    return c


def _unlimited(value, unit=" s"):
    return "0 (unlimited)" if value == 0 else f"{value:g}{unit}"


# (rule id, values it needs, violated when, message); docs/capacity-model.md section 8.
RULES = (
    ("client_conn_capacity", ("clients", "mcc"), lambda c: c["clients"] + c["others"] > c["mcc"],
     lambda c: f"{c['reps']:g} replicas x MaxOpenConns {c['moc']:g} + {c['others']:g} other PgBouncer clients = "
               f"{c['clients'] + c['others']:g} > max_client_conn {c['mcc']:g}"),
    ("server_conn_capacity", ("server", "maxc"), lambda c: c["server"] + c["direct"] + c["su"] > c["maxc"],
     lambda c: f"PgBouncer may open {c['server']:g} server connections ({c['pairs']} pair(s) x ({c['pool']:g} pool + "
               f"{c['reserve']:g} reserve), capped by max_db_connections {_unlimited(c['max_db'] or 0, '')}) + "
               f"{c['direct']:g} direct + {c['su']:g} superuser = {c['server'] + c['direct'] + c['su']:g} > "
               f"max_connections {c['maxc']:g}"),
    ("server_steady", ("steady", "pool"), lambda c: c["steady"] > c["pool"],
     lambda c: f"the steady load keeps {c['steady']:g} database connections busy > default_pool_size "
               f"{c['pool']:g}: requests queue in PgBouncer all the time"),
    ("server_peak", ("peak", "pool"), lambda c: c["peak"] > c["pool"] + c["usable_reserve"],
     lambda c: f"the peak load keeps {c['peak']:g} database connections busy > default_pool_size {c['pool']:g} + "
               f"usable reserve {c['usable_reserve']:g}" + (" (reserve_pool_timeout 0 disables it)"
                                                            if c["rpt"] == 0 and c["reserve"] else "")),
    ("session_pool", ("clients", "pool"), lambda c: c["session"] and c["clients"] > c["pool"] + c["reserve"],
     lambda c: f"session mode pins one server connection per client: {c['reps']:g} x {c['moc']:g} = {c['clients']:g} "
               f"Mattermost connections > default_pool_size {c['pool']:g} + reserve {c['reserve']:g}; the rest "
               "wait until query_wait_timeout and then fail"),
    ("session_max_connections", ("clients", "maxc"),
     lambda c: c["session"] and c["clients"] + c["direct"] + c["su"] > c["maxc"],
     lambda c: f"session mode needs a server connection for each of {c['reps']:g} x {c['moc']:g} clients: "
               f"{c['clients']:g} + {c['direct']:g} direct + {c['su']:g} superuser = "
               f"{c['clients'] + c['direct'] + c['su']:g} > max_connections {c['maxc']:g}"),
    ("idle_le_open", ("idle", "moc"), lambda c: c["idle"] > c["moc"],
     lambda c: f"MaxIdleConns {c['idle']:g} > MaxOpenConns {c['moc']:g}"),
    ("min_pool_le_pool", ("min_pool", "pool"), lambda c: c["min_pool"] > c["pool"],
     lambda c: f"min_pool_size {c['min_pool']:g} > default_pool_size {c['pool']:g}"),
    ("gomaxprocs_range", ("procs", "vcpus"), lambda c: not 1 <= c["procs"] <= c["vcpus"],
     lambda c: f"GOMAXPROCS {c['procs']:g} is outside 1..{c['vcpus']:g} (the host's vCPUs)"),
    ("gomaxprocs_quota", ("procs", "mm_cpus"), lambda c: c["procs"] > max(1, math.floor(c["mm_cpus"])),
     lambda c: f"GOMAXPROCS {c['procs']:g} > the replica's CPU limit {c['mm_cpus']:g}: more runnable threads "
               "than its quota, so it gets throttled"),
    ("gomemlimit_headroom", ("gomem", "main_mb"),
     lambda c: not 0.90 * c["main_mb"] <= c["gomem"] <= 0.95 * c["main_mb"],
     lambda c: ("GOMEMLIMIT off: no soft limit, so memory pressure ends in an OOM kill instead of garbage "
                f"collection; use 90-95 % of {c['main_mb']:g} MB" if math.isinf(c["gomem"]) else
                f"GOMEMLIMIT {c['gomem']:g} MiB is {100 * c['gomem'] / c['main_mb']:.1f} % of the "
                f"{c['main_mb']:g} MB the main process may use (replica limit {c['mm_mb']:g} - plugins "
                f"{c['plugin_mb']:g}); use 90-95 % (5-10 % headroom)")),
    ("mattermost_cpus", ("reps", "mm_cpus", "vcpus"), lambda c: c["reps"] * c["mm_cpus"] > c["vcpus"] + 1e-9,
     lambda c: f"{c['reps']:g} replicas x {c['mm_cpus']:g} CPUs = {c['reps'] * c['mm_cpus']:g} > {c['vcpus']:g} "
               "vCPUs: the app tier alone oversubscribes the host"),
    ("container_cpus", ("hogs",), lambda c: c["hogs"],
     lambda c: f"container cpus above the host's {c['vcpus']:g} vCPUs: {c['hogs']}"),
    ("memory_fit", ("limits_mb", "host"), lambda c: c["limits_mb"] + c["os"] > c["host"],
     lambda c: f"container limits {c['limits_mb']:g} MB ("
               + (f"Mattermost {c['reps']:g} x {c['mm_mb']:g} MB + " if c["mm_mb"] is not None else "")
               + f"{c['others_mb']:g} MB others) + OS reserve {c['os']:g} MB = {c['limits_mb'] + c['os']:g} MB > "
               f"host {c['host']:g} MB"),
    ("pg_memory", ("pg_need", "pg_mb"), lambda c: c["pg_need"] > c["pg_mb"],
     lambda c: f"shared_buffers {c['sb']:g} + /dev/shm {c['shm']:g} + maintenance_work_mem {c['maint']:g} + "
               f"{AUTOVACUUM_WORKERS} autovacuum x {c['autovac']:g} + max_connections {c['maxc']:g} x (work_mem "
               f"{c['work']:g} x hash_mem_multiplier {c['hmm']:g} + {BACKEND_MB}) + worker backends = "
               f"{c['pg_need']:g} MB > PostgreSQL container limit {c['pg_mb']:g} MB"),
    ("effective_cache_fits", ("cache", "pg_mb"), lambda c: c["cache"] > c["pg_mb"],
     lambda c: f"effective_cache_size {c['cache']:g} MB > PostgreSQL container limit {c['pg_mb']:g} MB: the "
               "container cannot cache that much, so the planner overrates index scans"),
    ("unbounded_wait", ("qwt",), lambda c: c["qwt"] == 0,
     lambda c: "PgBouncer query_wait_timeout 0 waits forever: a starved pool hangs every client instead of "
               "failing fast; use a value below QueryTimeout"),
    ("query_wait_timeout", ("qwt", "qt"), lambda c: c["qwt"] >= c["qt"],
     lambda c: f"PgBouncer query_wait_timeout {c['qwt']:g} s >= Mattermost QueryTimeout {c['qt']:g} s: the app "
               "gives up before PgBouncer reports the starved pool"),
    ("reserve_before_wait", ("rpt", "qwt"), lambda c: c["rpt"] >= c["qwt"] > 0,
     lambda c: f"reserve_pool_timeout {c['rpt']:g} s >= query_wait_timeout {c['qwt']:g} s: clients fail before "
               "the reserve pool is used"),
    ("server_idle_le_lifetime", ("sit", "slt"), lambda c: c["slt"] > 0 and (c["sit"] == 0 or c["sit"] > c["slt"]),
     lambda c: f"server_idle_timeout {_unlimited(c['sit'])} > server_lifetime {c['slt']:g} s: idle server "
               "connections outlive the lifetime meant to recycle them"),
)


def stack_plan_check(data):
    """Violations of the capacity model in DATA, a (partial) plan (see stack_plan_check.yml)."""
    if not isinstance(data, Mapping):
        raise PlanError(f"stack_plan_check: the input must be a dict, got {type(data).__name__}")
    c = _context(data)
    return [{"rule": rule, "message": message(c)} for rule, needs, violated, message in RULES
            if all(c.get(k) is not None for k in needs) and violated(c)]
