# -*- coding: utf-8 -*-
# Copyright: (c) 2026, mattermost_ops.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Capacity planner filters stack_plan and stack_plan_check; the model is docs/capacity-model.md.

Source tags, cited in full there: [MM-docs] [MM-cloud] [PG-wiki] [PG-docs] [PgB-docs] [LT-ng] [nginx] [pg-exp] [Go];
[assume] marks our assumptions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

POOL_MODES = ("transaction", "session")

# Client side, Little's law L = lambda x W.
ACTION_INTERVAL_S = 20.0  # [LT-ng] simulcontroller AvgIdleTimeMs default 20000: one action per 20 s
REQUESTS_PER_ACTION = 5  # [assume] API requests behind one user action
PEAK_FACTOR = 2.0  # [assume] busy-hour rate over the mean rate
DB_SECONDS_PER_REQUEST = 0.05  # [assume] W: time one request holds a database connection
Z_PEAK = 3.0  # M/G/inf: busy connections ~ Poisson(L); L + 3 sqrt(L) is about the 99.9th percentile
MIN_OPEN_CONNS = 10  # [assume] floor for user-independent work (job scheduler, plugins)
MAX_OPEN_CONNS = 100  # [MM-docs] v11 default MaxOpenConns: the ceiling per replica

# Server side.
SPINDLES = 1  # [PG-wiki] busy pool = (2 x cores) + effective spindles; one virtual disk
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
SHARED_BUFFERS_SHARE = 1 / 16  # [MM-docs] "about 20 % of RAM or less" on a co-located host: less
SHARED_BUFFERS_MIN_MB = 128  # [PG-docs] default
EFFECTIVE_CACHE_SHARE = 0.20  # [MM-docs]
WORK_MEM_MIN_MB = 4  # [PG-docs] default
WORK_MEM_MAX_MB = 16  # [MM-docs] small-host suggestion
MAINT_MIN_MB = 64  # [PG-docs] maintenance_work_mem default
MAINT_MAX_MB = 1024  # [assume] ample for Mattermost's index builds
AUTOVACUUM_WORKERS = 3  # [PG-docs] autovacuum_max_workers default
BACKEND_MB = 5  # [assume] private memory of one PostgreSQL backend
MM_BASE_MB = 384  # [assume] one replica with its default plugins, idle
MM_PER_1000_USERS_MB = 1600  # [MM-docs] 1-1000 users: 2 GB for the app -> 384 + 1600 ~ 2 GB
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

# The interface: sections of a plan and their keys, in order (then containers, memory and rationale).
KEY_ORDER = {
    "postgres": ("max_connections", "superuser_reserved_connections", "shared_buffers_mb",
                 "effective_cache_size_mb", "work_mem_mb", "maintenance_work_mem_mb"),
    "pgbouncer": ("pool_mode", "max_client_conn", "default_pool_size", "min_pool_size", "reserve_pool_size",
                  "reserve_pool_timeout", "max_db_connections", "query_wait_timeout", "server_idle_timeout",
                  "server_lifetime"),
    "mattermost": ("replicas", "MaxOpenConns", "MaxIdleConns", "ConnMaxLifetimeMilliseconds",
                   "ConnMaxIdleTimeMilliseconds", "QueryTimeout", "GOMAXPROCS", "GOMEMLIMIT", "memory_mb", "cpus"),
    "direct_clients": ("postgres_exporter", *DIRECT_CLIENTS, "grafana"),
    "pgbouncer_other_clients": ("pgbouncer_exporter", "grafana"),
}
MEMORY_KEYS = ("host_mb", "containers_total_mb", "os_reserve_mb", "free_mb")


def _fail(prefix, field, value, expected):
    raise AnsibleFilterError(f"{prefix}: {field}={value!r} is invalid; {expected}")


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


def _inputs(users, replicas, vcpus, memory_mb, pool_mode, services):
    inp = {}
    for field, value, integer, hint in (("users", users, True, "an integer > 0 (active users), e.g. 100"),
                                        ("replicas", replicas, True, "an integer >= 1, e.g. replicas=1"),
                                        ("vcpus", vcpus, False, "a number >= 1, e.g. vcpus=2"),
                                        ("memory_mb", memory_mb, True, "an integer > 0 (MiB), e.g. 4096")):
        inp[field] = _number(field, value, f"use {hint}", integer)
        if inp[field] < 1:
            _fail("stack_plan", field, value, f"use {hint}")
    if not isinstance(pool_mode, str) or pool_mode not in POOL_MODES:
        _fail("stack_plan", "pool_mode", pool_mode, f"use one of: {', '.join(POOL_MODES)}")
    valid = f"use a list of names from: {', '.join(OPTIONAL_SERVICES)}"
    if isinstance(services, (str, Mapping)) or not hasattr(services, "__iter__"):
        _fail("stack_plan", "services", services, valid)
    services = list(services)
    for name in services:
        if not isinstance(name, str) or name not in OPTIONAL_SERVICES:
            _fail("stack_plan", "services", name, valid)
    inp["pool_mode"] = POOL_MODES[POOL_MODES.index(pool_mode)]
    inp["services"] = [name for name in OPTIONAL_SERVICES if name in services]
    return inp


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


def _client_side(p, inp):
    """Mattermost's pool (Little's law) and PgBouncer's client limit."""
    users, replicas, services = inp["users"], inp["replicas"], inp["services"]
    rate = users / ACTION_INTERVAL_S * REQUESTS_PER_ACTION * PEAK_FACTOR
    busy = rate * DB_SECONDS_PER_REQUEST / replicas
    want = math.ceil(busy + Z_PEAK * math.sqrt(busy))
    moc = p.put("mattermost.MaxOpenConns", min(MAX_OPEN_CONNS, max(MIN_OPEN_CONNS, want)),
                f"Little's law: {users} users x {rate / users:.2f} req/s at peak x {DB_SECONDS_PER_REQUEST} s / "
                f"{replicas} replica(s) = L {busy:.2f}; L + 3 sqrt(L) = {want}, kept within "
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
        busy = math.ceil(2 * inp["vcpus"]) + SPINDLES
        pool = p.put("pgbouncer.default_pool_size", min(busy, clients), f"(2 x {inp['vcpus']} cores) + {SPINDLES} "
                     f"spindle = {busy} busy connections (PostgreSQL wiki), at most the {clients} clients.")
        reserve = p.put("pgbouncer.reserve_pool_size", min(RESERVE_MAX, max(RESERVE_MIN, 2 * pool)),
                        "Twice the pool within Mattermost cloud's 10-20, for when slow queries hold the pool.")
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
        raise AnsibleFilterError(
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


def _memory(p, inp, host):
    """PostgreSQL memory settings, container limits and the host budget."""
    users, replicas, conns = inp["users"], inp["replicas"], p["postgres.max_connections"]
    sb = p.put("postgres.shared_buffers_mb", max(SHARED_BUFFERS_MIN_MB, int(host * SHARED_BUFFERS_SHARE) // 16 * 16),
               f"1/16 of {host} MB: under the 20 % ceiling because PostgreSQL shares the host.")
    work = p.put("postgres.work_mem_mb", max(WORK_MEM_MIN_MB, min(WORK_MEM_MAX_MB, host // 256)),
                 "16 MB small-host suggestion (less below 4 GB); max_connections x work_mem fits the container.")
    maint = p.put("postgres.maintenance_work_mem_mb", max(MAINT_MIN_MB, min(MAINT_MAX_MB, host // 64)),
                  f"1/64 of host memory within {MAINT_MIN_MB}-{MAINT_MAX_MB} MB.")
    cache = p.put("postgres.effective_cache_size_mb", int(host * EFFECTIVE_CACHE_SHARE) // 16 * 16,
                  "20 % of host memory; the PostgreSQL container is at least that big.")
    pg_need = sb + maint + (conns + AUTOVACUUM_WORKERS) * BACKEND_MB + conns * work
    per_replica = math.ceil(users / replicas)
    mm_mb = _round_up(MM_BASE_MB + per_replica * MM_PER_1000_USERS_MB / 1000)
    limits = {
        "postgres": (_round_up(max(pg_need, cache)), f"max({sb} shared_buffers + {maint} maintenance + {conns} x "
                     f"{work} work_mem + {conns + AUTOVACUUM_WORKERS} backends x {BACKEND_MB} MB, {cache} cache)."),
        "pgbouncer": (_round_up(PGBOUNCER_BASE_MB + p["pgbouncer.max_client_conn"] * PGBOUNCER_KB_PER_CLIENT / 1024),
                      f"{PGBOUNCER_BASE_MB} MB + {PGBOUNCER_KB_PER_CLIENT} KiB of packet buffers per allowed client."),
        "mattermost": (mm_mb, f"Per replica: {MM_BASE_MB} MB + 1.6 MB x {per_replica} users (1000 users ~ 2 GB)."),
        "nginx": (_round_up(NGINX_BASE_MB + users * NGINX_KB_PER_USER / 1024),
                  f"{NGINX_BASE_MB} MB + {NGINX_KB_PER_USER} KiB of proxy buffers per active user."),
    }
    for name in inp["services"]:
        limits[name] = (OPTIONAL_SERVICES[name][0], OPTIONAL_SERVICES[name][2])
    for name, (mb, why) in limits.items():
        p.put(f"containers.{name}.memory_mb", mb, why)
    p.put("mattermost.memory_mb", mm_mb, "Per replica, as containers.mattermost.memory_mb.")
    p.put("mattermost.GOMEMLIMIT", f"{math.ceil(mm_mb * GOMEMLIMIT_SHARE)}MiB", "90 % of the replica's limit: "
          "headroom for non-heap memory and plugin processes (the Go limit is soft).")
    total = sum(mb for mb, why in limits.values()) + (replicas - 1) * mm_mb
    reserve = max(OS_RESERVE_MIN_MB, math.ceil(host * OS_RESERVE_SHARE))
    p.put("memory.host_mb", host, "As given: inside a container the facts show the machine, not the limit.")
    p.put("memory.containers_total_mb", total, f"Sum of all limits, {replicas} Mattermost replica(s) included.")
    p.put("memory.os_reserve_mb", reserve, "max(512 MB, 10 %): kernel, dockerd, containerd, sshd, page cache.")
    p.put("memory.free_mb", host - total - reserve, "What is left after limits and the OS reserve.")


def _build(inp, host):
    p = _Plan()
    for part in (_client_side, _server_side, _cpus):
        part(p, inp)
    _memory(p, inp, host)
    return p


def _min_fitting_mb(inp):
    """Smallest multiple of ROUND_MB above memory_mb that fits (no part of the need shrinks as the host grows)."""
    host = inp["memory_mb"]
    while True:
        p = _build(inp, host)
        if p["memory.containers_total_mb"] + p["memory.os_reserve_mb"] <= host:
            return host
        host = _round_up(p["memory.containers_total_mb"] + p["memory.os_reserve_mb"])


def stack_plan(users, replicas=1, vcpus=2, memory_mb=4096, pool_mode="transaction", services=None):
    """The capacity plan for USERS active users (see stack_plan.yml)."""
    inp = _inputs(users, replicas, vcpus, memory_mb, pool_mode, [] if services is None else services)
    p = _build(inp, inp["memory_mb"])
    if p["memory.free_mb"] < 0:
        raise AnsibleFilterError(
            f"stack_plan: memory_mb={inp['memory_mb']} is too small for {inp['users']} users, {inp['replicas']} "
            f"replica(s), pool_mode={inp['pool_mode']} and {len(inp['services'])} optional service(s): limits "
            f"{p['memory.containers_total_mb']} MB + OS reserve {p['memory.os_reserve_mb']} MB; "
            f"use memory_mb >= {_min_fitting_mb(inp)}, or fewer services or replicas.")
    plan = {"inputs": inp}
    for section, keys in KEY_ORDER.items():
        plan[section] = {key: p[f"{section}.{key}"] for key in keys}
    plan["containers"] = {name: {"memory_mb": p[f"containers.{name}.memory_mb"], "cpus": p[f"containers.{name}.cpus"]}
                          for name in ("postgres", "pgbouncer", "mattermost", "nginx", *inp["services"])}
    plan["memory"] = {key: p[f"memory.{key}"] for key in MEMORY_KEYS}
    plan["rationale"] = dict(sorted(p.why.items()))
    return plan


# stack_plan_check ------------------------------------------------------------------------------------
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


def _num(data, *paths):
    path, value = _find(data, *paths)
    return None if value is None else _number(path, value, "use a number", prefix="stack_plan_check")


def _gomemlimit_mib(data):
    value = _find(data, "mattermost.GOMEMLIMIT")[1]
    match = re.fullmatch(r"\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*", str(value))
    if value is not None and not match:
        _fail("stack_plan_check", "mattermost.GOMEMLIMIT", value, "use a Go size such as '1105MiB'")
    return None if value is None else int(match.group(1)) * GO_UNITS_MIB[match.group(2) or "B"]


# The values the rules read: name -> paths tried in order. Parts of a sum (ADDENDS) count as 0 when absent.
CHECK_VALUES = {
    "reps": ("replicas", "mattermost.replicas", "inputs.replicas"), "vcpus": ("host.vcpus", "inputs.vcpus"),
    "host": ("host.memory_mb", "memory.host_mb", "inputs.memory_mb"), "os": ("memory.os_reserve_mb",),
    "moc": ("mattermost.MaxOpenConns",), "idle": ("mattermost.MaxIdleConns",), "qt": ("mattermost.QueryTimeout",),
    "procs": ("mattermost.GOMAXPROCS",), "mm_cpus": ("mattermost.cpus", "containers.mattermost.cpus"),
    "mm_mb": ("mattermost.memory_mb", "containers.mattermost.memory_mb"), "mcc": ("pgbouncer.max_client_conn",),
    "pool": ("pgbouncer.default_pool_size",), "reserve": ("pgbouncer.reserve_pool_size",),
    "min_pool": ("pgbouncer.min_pool_size",), "max_db": ("pgbouncer.max_db_connections",),
    "qwt": ("pgbouncer.query_wait_timeout",), "rpt": ("pgbouncer.reserve_pool_timeout",),
    "sit": ("pgbouncer.server_idle_timeout",), "slt": ("pgbouncer.server_lifetime",),
    "maxc": ("postgres.max_connections",), "su": ("postgres.superuser_reserved_connections",),
    "sb": ("postgres.shared_buffers_mb",), "work": ("postgres.work_mem_mb",),
    "pg_mb": ("containers.postgres.memory_mb",),
}
ADDENDS = ("os", "reserve", "su")


def _context(d):
    """Every value the rules use (None when absent) and the sums they compare."""
    c = {name: _num(d, *paths) for name, paths in CHECK_VALUES.items()}
    c.update({name: c[name] or 0 for name in ADDENDS})
    sections = {name: _find(d, name)[1] for name in ("containers", "direct_clients", "pgbouncer_other_clients")}
    sections = {name: node if isinstance(node, Mapping) else {} for name, node in sections.items()}
    c["direct"], c["others"] = (sum(_num(d, f"{name}.{key}") or 0 for key in sections[name])
                                for name in ("direct_clients", "pgbouncer_other_clients"))
    c["session"] = _find(d, "pgbouncer.pool_mode", "inputs.pool_mode")[1] == "session"
    c["gomem"] = _gomemlimit_mib(d)
    c["pairs"] = 2 if _num(d, "pgbouncer_other_clients.grafana") else 1
    if c["pool"] is not None:
        c["server"] = c["pairs"] * (c["pool"] + c["reserve"])
        c["server"] = c["server"] if c["max_db"] is None else min(c["server"], c["max_db"])
    if None not in (c["reps"], c["moc"]):
        c["clients"] = c["reps"] * c["moc"]
    containers = sections["containers"]
    if c["vcpus"] is not None:
        cpus = {name: _num(d, f"containers.{name}.cpus") for name in containers}
        c["hogs"] = ", ".join(f"{n} {x:g}" for n, x in cpus.items() if x is not None and x > c["vcpus"] + 1e-9)
    if (containers or c["mm_mb"] is not None) and (c["mm_mb"] is None or c["reps"] is not None):
        c["others_mb"] = sum(_num(d, f"containers.{n}.memory_mb") or 0 for n in containers if n != "mattermost")
        c["limits_mb"] = c["others_mb"] + (c["reps"] * c["mm_mb"] if c["mm_mb"] is not None else 0)
    return c


# (rule id, values it needs, violated when, message); docs/capacity-model.md section 8.
RULES = (
    ("client_conn_capacity", ("clients", "mcc"), lambda c: c["clients"] + c["others"] > c["mcc"],
     lambda c: f"{c['reps']:g} replicas x MaxOpenConns {c['moc']:g} + {c['others']:g} other PgBouncer clients = "
               f"{c['clients'] + c['others']:g} > max_client_conn {c['mcc']:g}"),
    ("server_conn_capacity", ("server", "maxc"), lambda c: c["server"] + c["direct"] + c["su"] > c["maxc"],
     lambda c: f"PgBouncer may open {c['server']:g} server connections ({c['pairs']} pair(s) x ({c['pool']:g} pool + "
               f"{c['reserve']:g} reserve), capped by max_db_connections {c['max_db'] or 'unset'}) + {c['direct']:g} "
               f"direct + {c['su']:g} superuser = {c['server'] + c['direct'] + c['su']:g} > max_connections "
               f"{c['maxc']:g}"),
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
    ("gomemlimit_headroom", ("gomem", "mm_mb"), lambda c: not 0.90 * c["mm_mb"] <= c["gomem"] <= 0.95 * c["mm_mb"],
     lambda c: f"GOMEMLIMIT {c['gomem']:g} MiB is {100 * c['gomem'] / c['mm_mb']:.1f} % of the replica's "
               f"{c['mm_mb']:g} MB limit; use 90-95 % (5-10 % headroom)"),
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
    ("pg_memory", ("sb", "work", "maxc", "pg_mb"), lambda c: c["sb"] + c["maxc"] * c["work"] > c["pg_mb"],
     lambda c: f"shared_buffers {c['sb']:g} + max_connections {c['maxc']:g} x work_mem {c['work']:g} = "
               f"{c['sb'] + c['maxc'] * c['work']:g} MB > PostgreSQL container limit {c['pg_mb']:g} MB"),
    ("query_wait_timeout", ("qwt", "qt"), lambda c: c["qwt"] >= c["qt"],
     lambda c: f"PgBouncer query_wait_timeout {c['qwt']:g} s >= Mattermost QueryTimeout {c['qt']:g} s: the app "
               "gives up before PgBouncer reports the starved pool"),
    ("reserve_before_wait", ("rpt", "qwt"), lambda c: c["rpt"] >= c["qwt"],
     lambda c: f"reserve_pool_timeout {c['rpt']:g} s >= query_wait_timeout {c['qwt']:g} s: clients fail before "
               "the reserve pool is used"),
    ("server_idle_le_lifetime", ("sit", "slt"), lambda c: c["sit"] > c["slt"],
     lambda c: f"server_idle_timeout {c['sit']:g} s > server_lifetime {c['slt']:g} s"),
)


def stack_plan_check(data):
    """Violations of the capacity model in DATA, a (partial) plan (see stack_plan_check.yml)."""
    if not isinstance(data, Mapping):
        raise AnsibleFilterError(f"stack_plan_check: the input must be a dict, got {type(data).__name__}")
    c = _context(data)
    return [{"rule": rule, "message": message(c)} for rule, needs, violated, message in RULES
            if all(c.get(k) is not None for k in needs) and violated(c)]


class FilterModule:
    """Capacity planner filters."""

    def filters(self):
        return {"stack_plan": stack_plan, "stack_plan_check": stack_plan_check}
