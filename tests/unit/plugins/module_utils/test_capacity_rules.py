# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""stack_plan_check's rule code, rule by rule (plugins/module_utils/capacity.py, docs/capacity-model.md section 8).

Each rule is pinned by its boundary and its exact message: at the limit the whole check is clean, one step past
it exactly that rule fires with these numbers, further past too, and a value further inside passes. The numbers
are chosen so that a wrong operator (+ for |, * for **) or a shifted constant changes a result. Plans go through
JSON first, as Ansible hands them over: fresh strings and numbers, not this module's own objects.

tools/mutation_check.py runs this file against every mutant of the rule code, as plain functions in file order
(no pytest, no hypothesis: a fraction of a second per mutant), so tests here take no arguments or fixtures and
need nothing but the standard library."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "capacity_rules", Path(__file__).resolve().parents[4] / "plugins" / "module_utils" / "capacity.py")
sp = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(sp)


def with_value(base, path, value):
    data = copy.deepcopy(base)
    *parents, key = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[key] = value
    return data


def check(data):
    """{rule: message} of stack_plan_check(DATA) after a JSON round trip, in rule order."""
    return {v["rule"]: v["message"] for v in sp.stack_plan_check(json.loads(json.dumps(data)))}


def raised(function, *args, **kwargs):
    """The message of the PlanError that FUNCTION(*ARGS, **KWARGS) raises; any other outcome fails."""
    try:
        function(*args, **kwargs)
    except sp.PlanError as err:
        return str(err)
    raise AssertionError(f"no PlanError from {function.__name__}{args}")


def error(data):
    """The PlanError message stack_plan_check(DATA) raises."""
    return raised(sp.stack_plan_check, json.loads(json.dumps(data)))


# ------------------------------------------------------------------------------------------------ boundaries
OTHERS = {"pgbouncer_other_clients": {"pgbouncer_exporter": 1, "grafana": 2}}
DIRECT = {"direct_clients": {"postgres_exporter": 2, "backup": 1, "archive": 1, "admin": 3, "grafana": 0}}
PG = {"postgres": {"shared_buffers_mb": 300, "maintenance_work_mem_mb": 70, "autovacuum_work_mem_mb": 33,
                   "work_mem_mb": 7, "hash_mem_multiplier": 1.5, "max_connections": 11}}
PG_TEXT = ("shared_buffers 300 + /dev/shm {shm} + maintenance_work_mem {maint} + 3 autovacuum x {autovac} + "
           "max_connections 11 x (work_mem 7 x hash_mem_multiplier {hmm} + 5) + worker backends = {need} MB > "
           "PostgreSQL container limit {limit} MB")
MAIN = {"mattermost": {"memory_mb": 1000, "plugin_memory_mb": 100}}
HEADROOM = ("GOMEMLIMIT {gomem} MiB is {share} % of the {main} MB the main process may use (replica limit 1000 - "
            "plugins {plugins}); use 90-95 % (5-10 % headroom)")
SESSION_POOL = ("session mode pins one server connection per client: 3 x 10 = 30 Mattermost connections > "
                "default_pool_size 19 + reserve 10; the rest wait until query_wait_timeout and then fail")
QUOTA = ("GOMAXPROCS {procs} > the replica's CPU limit {cpus}: more runnable threads than its quota, so it gets "
         "throttled")
IDLE = "server_idle_timeout {sit} > server_lifetime {slt} s: idle server connections outlive the lifetime meant to " \
       "recycle them"

# (base, path, values that pass: the limit first, values that fail: one step past it first, the rule, its exact
# message one step past the limit); a value further inside and one further past pin the comparison's direction.
BOUNDARIES = [
    ({"replicas": 3, "mattermost": {"MaxOpenConns": 10}, **OTHERS}, "pgbouncer.max_client_conn", (33, 34), (32, 31),
     "client_conn_capacity", "3 replicas x MaxOpenConns 10 + 3 other PgBouncer clients = 33 > max_client_conn 32"),
    ({"mattermost": {"replicas": 2, "MaxOpenConns": 10}}, "pgbouncer.max_client_conn", (20, 21), (19, 1),
     "client_conn_capacity", "2 replicas x MaxOpenConns 10 + 0 other PgBouncer clients = 20 > max_client_conn 19"),
    ({"pgbouncer": {"default_pool_size": 5, "reserve_pool_size": 12, "max_db_connections": 0}, **OTHERS, **DIRECT,
      "postgres": {"superuser_reserved_connections": 3}}, "postgres.max_connections", (44, 45), (43, 1),
     "server_conn_capacity", "PgBouncer may open 34 server connections (2 pair(s) x (5 pool + 12 reserve), capped by "
     "max_db_connections 0 (unlimited)) + 7 direct + 3 superuser = 44 > max_connections 43"),
    ({"pgbouncer": {"default_pool_size": 5, "reserve_pool_size": 12, "max_db_connections": 20},
      "pgbouncer_other_clients": {"grafana": 2}, "direct_clients": {"backup": 1}}, "postgres.max_connections",
     (21, 22), (20, 1),
     "server_conn_capacity", "PgBouncer may open 20 server connections (2 pair(s) x (5 pool + 12 reserve), capped by "
     "max_db_connections 20) + 1 direct + 0 superuser = 21 > max_connections 20"),
    ({"pgbouncer": {"default_pool_size": 5, "reserve_pool_size": 12, "max_db_connections": 40},
      "pgbouncer_other_clients": {"grafana": 0}}, "postgres.max_connections", (17, 18), (16, 1),
     "server_conn_capacity", "PgBouncer may open 17 server connections (1 pair(s) x (5 pool + 12 reserve), capped by "
     "max_db_connections 40) + 0 direct + 0 superuser = 17 > max_connections 16"),
    ({"pgbouncer": {"default_pool_size": 5}}, "postgres.max_connections", (5, 6), (4, 1),
     "server_conn_capacity", "PgBouncer may open 5 server connections (1 pair(s) x (5 pool + 0 reserve), capped by "
     "max_db_connections 0 (unlimited)) + 0 direct + 0 superuser = 5 > max_connections 4"),
    ({"db_load": {"steady_busy": 8}}, "pgbouncer.default_pool_size", (8, 9), (7.99, 1),
     "server_steady", "the steady load keeps 8 database connections busy > default_pool_size 7.99: requests queue in "
     "PgBouncer all the time"),
    ({"db_load": {"peak_busy": 24}, "pgbouncer": {"reserve_pool_size": 15, "reserve_pool_timeout": 1}},
     "pgbouncer.default_pool_size", (9, 10), (8, 1),
     "server_peak", "the peak load keeps 24 database connections busy > default_pool_size 8 + usable reserve 15"),
    ({"pgbouncer": {"default_pool_size": 9, "reserve_pool_size": 15}}, "db_load.peak_busy", (24, 23.5), (24.5, 100),
     "server_peak", "the peak load keeps 24.5 database connections busy > default_pool_size 9 + usable reserve 15"),
    ({"pgbouncer": {"default_pool_size": 9, "reserve_pool_size": 15, "reserve_pool_timeout": 0}},
     "db_load.peak_busy", (9, 8), (10, 11),
     "server_peak", "the peak load keeps 10 database connections busy > default_pool_size 9 + usable reserve 0 "
     "(reserve_pool_timeout 0 disables it)"),
    ({"pgbouncer": {"default_pool_size": 9, "reserve_pool_timeout": 0}}, "db_load.peak_busy", (9, 0), (10, 11),
     "server_peak", "the peak load keeps 10 database connections busy > default_pool_size 9 + usable reserve 0"),
    ({"replicas": 3, "mattermost": {"MaxOpenConns": 10},
      "pgbouncer": {"pool_mode": "Session", "default_pool_size": 19}},
     "pgbouncer.reserve_pool_size", (11, 12), (10, 0), "session_pool", SESSION_POOL),
    ({"inputs": {"replicas": 3, "pool_mode": "session"}, "mattermost": {"MaxOpenConns": 10},
      "pgbouncer": {"default_pool_size": 19}}, "pgbouncer.reserve_pool_size", (11, 12), (10, 0), "session_pool",
     SESSION_POOL),
    ({"replicas": 3, "mattermost": {"MaxOpenConns": 10}, "pgbouncer": {"pool_mode": " SESSION "}, **DIRECT,
      "postgres": {"superuser_reserved_connections": 3}}, "postgres.max_connections", (40, 41), (39, 1),
     "session_max_connections", "session mode needs a server connection for each of 3 x 10 clients: 30 + 7 direct + "
     "3 superuser = 40 > max_connections 39"),
    ({"mattermost": {"MaxOpenConns": 10}}, "mattermost.MaxIdleConns", (10, 0), (11, 12),
     "idle_le_open", "MaxIdleConns 11 > MaxOpenConns 10"),
    ({"pgbouncer": {"default_pool_size": 5}}, "pgbouncer.min_pool_size", (5, 0), (6, 7),
     "min_pool_le_pool", "min_pool_size 6 > default_pool_size 5"),
    ({"host": {"vcpus": 2}}, "mattermost.GOMAXPROCS", (2, 1.5), (3, 4),
     "gomaxprocs_range", "GOMAXPROCS 3 is outside 1..2 (the host's vCPUs)"),
    ({"host": {"vcpus": 2}}, "mattermost.GOMAXPROCS", (1, 1.5), (0, -1),
     "gomaxprocs_range", "GOMAXPROCS 0 is outside 1..2 (the host's vCPUs)"),
    ({"inputs": {"vcpus": 4}}, "mattermost.GOMAXPROCS", (4, 3), (4.5, 5),
     "gomaxprocs_range", "GOMAXPROCS 4.5 is outside 1..4 (the host's vCPUs)"),
    ({"mattermost": {"cpus": 1.99}}, "mattermost.GOMAXPROCS", (1, 0.5), (2, 3),
     "gomaxprocs_quota", QUOTA.format(procs=2, cpus=1.99)),
    ({"mattermost": {"cpus": 2.0}}, "mattermost.GOMAXPROCS", (2, 1), (3, 4),
     "gomaxprocs_quota", QUOTA.format(procs=3, cpus=2)),
    ({"containers": {"mattermost": {"cpus": 0.5}}}, "mattermost.GOMAXPROCS", (1, 0.5), (2, 3),
     "gomaxprocs_quota", QUOTA.format(procs=2, cpus=0.5)),
    (MAIN, "mattermost.GOMEMLIMIT", ("810MiB", "830MiB"), ("809MiB", "1MiB"),
     "gomemlimit_headroom", HEADROOM.format(gomem=809, share=89.9, main=900, plugins=100)),
    (MAIN, "mattermost.GOMEMLIMIT", ("855MiB", "830MiB"), ("856MiB", "1GiB"),
     "gomemlimit_headroom", HEADROOM.format(gomem=856, share=95.1, main=900, plugins=100)),
    ({"mattermost": {"memory_mb": 1000}}, "mattermost.GOMEMLIMIT", ("900MiB", "920MiB"), ("899MiB", "800MiB"),
     "gomemlimit_headroom", HEADROOM.format(gomem=899, share=89.9, main=1000, plugins=0)),
    ({"containers": {"mattermost": {"memory_mb": 1000}}}, "mattermost.GOMEMLIMIT", ("950MiB", "925MiB"),
     ("977MiB", "2GiB"), "gomemlimit_headroom", HEADROOM.format(gomem=977, share=97.7, main=1000, plugins=0)),
    (MAIN, "mattermost.GOMEMLIMIT", ("855MiB", "850MiB"), ("off",),
     "gomemlimit_headroom", "GOMEMLIMIT off: no soft limit, so memory pressure ends in an OOM kill instead of garbage "
     "collection; use 90-95 % of 900 MB"),
    ({"replicas": 3, "host": {"vcpus": 2}}, "mattermost.cpus", (0.66, 0.5), (0.67, 1),
     "mattermost_cpus", "3 replicas x 0.67 CPUs = 2.01 > 2 vCPUs: the app tier alone oversubscribes the host"),
    ({"replicas": 2, "host": {"vcpus": 2}}, "containers.mattermost.cpus", (1, 0.5), (1.01, 2),
     "mattermost_cpus", "2 replicas x 1.01 CPUs = 2.02 > 2 vCPUs: the app tier alone oversubscribes the host"),
    ({"replicas": 3, "host": {"vcpus": 0.3}}, "mattermost.cpus", (0.1, 0.05), (0.11, 0.2),  # 3 x 0.1 = 0.300...04
     "mattermost_cpus", "3 replicas x 0.11 CPUs = 0.33 > 0.3 vCPUs: the app tier alone oversubscribes the host"),
    ({"replicas": 1, "host": {"vcpus": 2}}, "mattermost.cpus", (2 + 1e-9, 2), (2.01, 3),  # 1e-9: rounding slack
     "mattermost_cpus", "1 replicas x 2.01 CPUs = 2.01 > 2 vCPUs: the app tier alone oversubscribes the host"),
    ({"host": {"vcpus": 2}, "containers": {"grafana": {"cpus": 0.5}, "nginx": {"memory_mb": 64}}},
     "containers.prometheus.cpus", (2 + 1e-9, 2), (2.01, 64),
     "container_cpus", "container cpus above the host's 2 vCPUs: prometheus 2.01"),
    ({"replicas": 3, "memory": {"os_reserve_mb": 500}, "containers": {
        "postgres": {"memory_mb": 1000}, "nginx": {"memory_mb": 100}, "prometheus": {"cpus": 0.5},
        "mattermost": {"memory_mb": 400}}}, "host.memory_mb", (2800, 2801), (2799, 1000),
     "memory_fit", "container limits 2300 MB (Mattermost 3 x 400 MB + 1100 MB others) + OS reserve 500 MB = 2800 MB > "
     "host 2799 MB"),
    ({"containers": {"postgres": {"memory_mb": 1000}, "nginx": {"memory_mb": 100}, "prometheus": {"cpus": 0.5}}},
     "memory.host_mb", (1100, 1200), (1099, 1),
     "memory_fit", "container limits 1100 MB (1100 MB others) + OS reserve 0 MB = 1100 MB > host 1099 MB"),
    ({"inputs": {"replicas": 1}, "mattermost": {"memory_mb": 400}}, "inputs.memory_mb", (400, 401), (399, 1),
     "memory_fit", "container limits 400 MB (Mattermost 1 x 400 MB + 0 MB others) + OS reserve 0 MB = 400 MB > "
     "host 399 MB"),
    (PG, "containers.postgres.memory_mb", (718.5, 719), (718, 1),
     "pg_memory", PG_TEXT.format(shm=64, maint=70, autovac=33, hmm=1.5, need=718.5, limit=718)),
    ({"postgres": {k: PG["postgres"][k] for k in ("shared_buffers_mb", "work_mem_mb", "max_connections")}},
     "containers.postgres.memory_mb", (844, 900), (843, 1),  # PostgreSQL's defaults, Docker's 64 MB /dev/shm
     "pg_memory", PG_TEXT.format(shm=64, maint=64, autovac=64, hmm=2, need=844, limit=843)),
    (with_value(PG, "postgres.shm_size_mb", 128), "containers.postgres.memory_mb", (782.5, 783), (782, 1),
     "pg_memory", PG_TEXT.format(shm=128, maint=70, autovac=33, hmm=1.5, need=782.5, limit=782)),
    (with_value(PG, "postgres.shm_size_mb", 0), "containers.postgres.memory_mb", (654.5, 655), (654, 1),
     "pg_memory", PG_TEXT.format(shm=0, maint=70, autovac=33, hmm=1.5, need=654.5, limit=654)),
    (with_value(PG, "postgres.autovacuum_work_mem_mb", -1), "containers.postgres.memory_mb", (829.5, 830), (829, 1),
     "pg_memory", PG_TEXT.format(shm=64, maint=70, autovac=70, hmm=1.5, need=829.5, limit=829)),
    (with_value(PG, "postgres.autovacuum_work_mem_mb", 1), "containers.postgres.memory_mb", (622.5, 623), (622, 1),
     "pg_memory", PG_TEXT.format(shm=64, maint=70, autovac=1, hmm=1.5, need=622.5, limit=622)),
    ({"containers": {"postgres": {"memory_mb": 1000}}}, "postgres.effective_cache_size_mb", (1000, 0), (1001, 2000),
     "effective_cache_fits", "effective_cache_size 1001 MB > PostgreSQL container limit 1000 MB: the container "
     "cannot cache that much, so the planner overrates index scans"),
    ({"mattermost": {"QueryTimeout": 30}}, "pgbouncer.query_wait_timeout", (1, 15), (0,),
     "unbounded_wait", "PgBouncer query_wait_timeout 0 waits forever: a starved pool hangs every client instead of "
     "failing fast; use a value below QueryTimeout"),
    ({"mattermost": {"QueryTimeout": 30}}, "pgbouncer.query_wait_timeout", (29, 1), (30, 31),
     "query_wait_timeout", "PgBouncer query_wait_timeout 30 s >= Mattermost QueryTimeout 30 s: the app gives up "
     "before PgBouncer reports the starved pool"),
    ({"pgbouncer": {"query_wait_timeout": 15}}, "pgbouncer.reserve_pool_timeout", (14.9, 0), (15, 16),
     "reserve_before_wait", "reserve_pool_timeout 15 s >= query_wait_timeout 15 s: clients fail before the reserve "
     "pool is used"),
    ({"pgbouncer": {"query_wait_timeout": 1}}, "pgbouncer.reserve_pool_timeout", (0.9, 0.5), (1, 2),
     "reserve_before_wait", "reserve_pool_timeout 1 s >= query_wait_timeout 1 s: clients fail before the reserve "
     "pool is used"),
    ({"pgbouncer": {"server_lifetime": 3600}}, "pgbouncer.server_idle_timeout", (3600, 1), (3601, 3602),
     "server_idle_le_lifetime", IDLE.format(sit="3601 s", slt=3600)),
    ({"pgbouncer": {"server_lifetime": 3600}}, "pgbouncer.server_idle_timeout", (1, 3600), (0,),
     "server_idle_le_lifetime", IDLE.format(sit="0 (unlimited)", slt=3600)),
    ({"pgbouncer": {"server_lifetime": 1}}, "pgbouncer.server_idle_timeout", (1, 0.5), (2, 3),
     "server_idle_le_lifetime", IDLE.format(sit="2 s", slt=1)),
    ({"pgbouncer": {"server_idle_timeout": 7200}}, "pgbouncer.server_lifetime", (0, 7200), (7199, 1),
     "server_idle_le_lifetime", IDLE.format(sit="7200 s", slt=7199)),
]


def test_at_the_limit_nothing_fires_and_past_it_only_its_rule():
    for base, path, passing, failing, rule, message in BOUNDARIES:
        for value in passing:
            assert check(with_value(base, path, value)) == {}, (rule, path, value)
        assert check(with_value(base, path, failing[0])) == {rule: message}, (rule, path, failing[0])
        for value in failing[1:]:
            assert list(check(with_value(base, path, value))) == [rule], (rule, path, value)


# ------------------------------------------------------------------------------------------------ rules apart
def test_an_empty_plan_and_the_planners_own_plan_pass():
    assert check({}) == {}
    assert check(sp.stack_plan(100, replicas=3, services=list(sp.OPTIONAL_SERVICES))) == {}


def test_session_rules_only_in_session_mode():
    base = {"replicas": 3, "mattermost": {"MaxOpenConns": 10}, "pgbouncer": {"default_pool_size": 5},
            "postgres": {"max_connections": 10}}
    for mode in ({}, {"pool_mode": "Transaction"}, {"pool_mode": "transaction"}):
        assert check(with_value(base, "pgbouncer", dict(base["pgbouncer"], **mode))) == {}
    session = with_value(base, "pgbouncer.pool_mode", "session")
    assert list(check(session)) == ["session_pool", "session_max_connections"]


def test_a_bounded_wait_of_zero_fires_only_its_own_rule():
    data = {"mattermost": {"QueryTimeout": 30}, "pgbouncer": {"query_wait_timeout": 0, "reserve_pool_timeout": 5}}
    assert list(check(data)) == ["unbounded_wait"]


def test_server_lifetime_zero_uses_connections_once_so_idle_time_is_not_checked():
    for sit in (0, 7200):
        assert check({"pgbouncer": {"server_lifetime": 0, "server_idle_timeout": sit}}) == {}


def test_rules_without_their_inputs_are_skipped():
    assert check({"mattermost": {"memory_mb": 400}, "host": {"memory_mb": 100}}) == {}  # replicas unknown
    assert check({"mattermost": {"memory_mb": 400}, "containers": {"nginx": {"memory_mb": 64}},
                  "host": {"memory_mb": 100}}) == {}
    assert check({"replicas": 1, "host": {"memory_mb": 100}, "memory": {"os_reserve_mb": 512}}) == {}
    assert check({"postgres": {"shared_buffers_mb": 9000, "work_mem_mb": 7}, "containers": {
        "postgres": {"memory_mb": 10}}}) == {}  # max_connections unknown
    assert check({"postgres": {"max_connections": 9000, "work_mem_mb": 7}, "containers": {
        "postgres": {"memory_mb": 10}}}) == {}  # shared_buffers unknown
    assert check({"postgres": {"shared_buffers_mb": 9000, "max_connections": 9000}, "containers": {
        "postgres": {"memory_mb": 10}}}) == {}  # work_mem unknown
    assert check({"mattermost": {"memory_mb": 1000, "GOMAXPROCS": 64, "MaxOpenConns": 10}}) == {}
    assert check({"replicas": 3, "pgbouncer": {"max_client_conn": 1}}) == {}  # MaxOpenConns unknown
    assert check({"mattermost": {"MaxOpenConns": 10}, "pgbouncer": {"max_client_conn": 1}}) == {}  # replicas
    assert check({"containers": {"prometheus": {"cpus": 64}}}) == {}  # vcpus unknown
    assert check({"host": {"vcpus": 1}, "containers": {"prometheus": {"memory_mb": 64}}}) == {}


def test_the_first_path_present_is_read():
    data = {"replicas": 3, "mattermost": {"replicas": 1, "MaxOpenConns": 10}, "inputs": {"replicas": 2},
            "pgbouncer": {"max_client_conn": 29}}
    assert check(data) == {"client_conn_capacity": "3 replicas x MaxOpenConns 10 + 0 other PgBouncer clients = 30 > "
                                                   "max_client_conn 29"}
    data = {"host": {"memory_mb": 1000}, "memory": {"host_mb": 99}, "inputs": {"memory_mb": 99},
            "containers": {"nginx": {"memory_mb": 1000}}}
    assert check(data) == {}
    data = {"host": {"vcpus": 2}, "inputs": {"vcpus": 1}, "mattermost": {"GOMAXPROCS": 2}}
    assert check(data) == {}


def test_several_rules_are_reported_in_rule_order():
    data = {"replicas": 3, "host": {"vcpus": 2, "memory_mb": 4096},
            "postgres": {"max_connections": 100},
            "pgbouncer": {"pool_mode": "session", "max_client_conn": 200, "default_pool_size": 50,
                          "reserve_pool_size": 0},
            "mattermost": {"MaxOpenConns": 80, "MaxIdleConns": 40, "GOMAXPROCS": 2, "memory_mb": 4096, "cpus": 2.0}}
    assert list(check(data)) == ["client_conn_capacity", "session_pool", "session_max_connections",
                                 "mattermost_cpus", "memory_fit"]


def test_two_containers_above_the_host():
    data = {"host": {"vcpus": 2}, "containers": {"postgres": {"cpus": 3}, "nginx": {"cpus": 1},
                                                 "prometheus": {"cpus": 2.5}}}
    assert check(data) == {"container_cpus": "container cpus above the host's 2 vCPUs: postgres 3, prometheus 2.5"}


def test_the_input_must_be_a_dict():
    for bad, kind in ((["not", "a", "dict"], "list"), ("text", "str"), (None, "NoneType"), (3, "int")):
        assert raised(sp.stack_plan_check, bad) == f"stack_plan_check: the input must be a dict, got {kind}"


# ------------------------------------------------------------------------------------------------ values
# The lowest valid value of every number the rules read ("positive": > 0), stated here, not read from the module.
LOWEST = {
    "replicas": "positive", "mattermost.replicas": "positive", "inputs.replicas": "positive",
    "host.vcpus": "positive", "inputs.vcpus": "positive",
    "host.memory_mb": "positive", "memory.host_mb": "positive", "inputs.memory_mb": "positive",
    "memory.os_reserve_mb": 0, "mattermost.MaxOpenConns": "positive", "mattermost.MaxIdleConns": 0,
    "mattermost.QueryTimeout": "positive", "mattermost.cpus": "positive", "containers.mattermost.cpus": "positive",
    "mattermost.memory_mb": "positive", "containers.mattermost.memory_mb": "positive",
    "mattermost.plugin_memory_mb": 0, "pgbouncer.max_client_conn": "positive",
    "pgbouncer.default_pool_size": "positive", "pgbouncer.reserve_pool_size": 0, "pgbouncer.min_pool_size": 0,
    "pgbouncer.max_db_connections": 0, "pgbouncer.query_wait_timeout": 0, "pgbouncer.reserve_pool_timeout": 0,
    "pgbouncer.server_idle_timeout": 0, "pgbouncer.server_lifetime": 0, "postgres.max_connections": "positive",
    "postgres.superuser_reserved_connections": 0, "postgres.shared_buffers_mb": "positive",
    "postgres.work_mem_mb": "positive", "postgres.hash_mem_multiplier": 1, "postgres.maintenance_work_mem_mb": 1,
    "postgres.effective_cache_size_mb": 0, "postgres.shm_size_mb": 0, "containers.postgres.memory_mb": "positive",
    "db_load.steady_busy": 0, "db_load.peak_busy": 0,
    "direct_clients.backup": 0, "direct_clients.postgres_exporter": 0, "pgbouncer_other_clients.grafana": 0,
    "pgbouncer_other_clients.pgbouncer_exporter": 0,
    "containers.grafana.memory_mb": "positive", "containers.grafana.cpus": "positive",
}


def test_each_value_has_its_minimum_and_errors_name_the_field():
    for path, low in LOWEST.items():
        if low == "positive":
            accepted, rejected, expected = (0.001, "1"), (0, -1, "0"), "use a number > 0"
        else:
            accepted, rejected, expected = (low, str(low), low + 0.5), (low - 0.01, low - 1), f"use a number >= {low}"
        base = {"host": {"vcpus": 64}} if path.startswith("containers.") else {}  # container cpus: read with vcpus
        for value in accepted:
            assert isinstance(sp.stack_plan_check(with_value(base, path, value)), list), (path, value)  # no error
        for value in rejected + ("many", True):
            assert error(with_value(base, path, value)) == f"stack_plan_check: {path}={value!r} is invalid; {expected}"


def test_gomaxprocs_is_any_number_the_rules_judge():
    assert error({"mattermost": {"GOMAXPROCS": "two"}}) == \
        "stack_plan_check: mattermost.GOMAXPROCS='two' is invalid; use a number"
    assert check({"host": {"vcpus": 2}, "mattermost": {"GOMAXPROCS": -3}}) == {
        "gomaxprocs_range": "GOMAXPROCS -3 is outside 1..2 (the host's vCPUs)"}


def test_autovacuum_work_mem_is_minus_one_or_at_least_one():
    for value, shown in ((0, "0"), (-2, "-2"), (0.5, "0.5"), ("0", "0"), (-1.5, "-1.5")):
        assert error(with_value(PG, "postgres.autovacuum_work_mem_mb", value)) == \
            f"stack_plan_check: postgres.autovacuum_work_mem_mb={shown} is invalid; use -1 or a number >= 1"


def test_pool_mode_must_be_one_pgbouncer_knows():
    for mode in ("statement", 5, ""):
        assert error({"pgbouncer": {"pool_mode": mode}}) == (f"stack_plan_check: pgbouncer.pool_mode={mode!r} is "
                                                             "invalid; use one of: transaction, session (any case)")
    assert error({"inputs": {"pool_mode": "statement"}}) == ("stack_plan_check: pgbouncer.pool_mode='statement' is "
                                                             "invalid; use one of: transaction, session (any case)")


def test_gomemlimit_must_be_a_go_size():
    assert error({"mattermost": {"GOMEMLIMIT": "1.5GiB"}}) == ("stack_plan_check: mattermost.GOMEMLIMIT='1.5GiB' is "
                                                               "invalid; use a Go size such as '1105MiB' or 'off'")
    for text in ("Off", "unlimited", "-1"):  # Go spells it 'off'; no negative sizes
        assert error({"mattermost": {"GOMEMLIMIT": text}}) == (f"stack_plan_check: mattermost.GOMEMLIMIT={text!r} is "
                                                               "invalid; use a Go size such as '1105MiB' or 'off'")


# ------------------------------------------------------------------------------------------------ helpers
def test_number_reads_numbers_and_numeric_text():
    for value, expected in (("10", 10), (" 10 ", 10), (7, 7), (10.0, 10), ("10.0", 10), (-3, -3),
                            ("99999999999999999999", 99999999999999999999),  # exactly, not through a float
                            (2.5, 2.5), (" 2.5 ", 2.5), (-2.5, -2.5), ("-0.25", -0.25), ("1e3", 1000)):
        number = sp._number("f", value, "use a number")
        assert number == expected and type(number) is type(expected), (value, number)


def test_number_rejects_the_rest():
    for value in (True, False, None, "abc", "", float("nan"), float("inf"), "-inf", [1], {}):
        assert raised(sp._number, "f", value, "use a number") == f"stack_plan: f={value!r} is invalid; use a number"


def test_number_integer_only_when_asked():
    assert sp._number("f", "3.0", "e", integer=True) == 3
    assert raised(sp._number, "f", "2.5", "e", True, prefix="p") == "p: f='2.5' is invalid; e"
    assert sp._number("f", "2.5", "e", prefix="p") == 2.5


def test_pool_mode_any_case():
    assert [sp._pool_mode("f", m, "p") for m in ("session", " Session ", "TRANSACTION")] == [
        "session", "session", "transaction"]
    for bad in ("statement", None, 1):
        assert raised(sp._pool_mode, "f", bad, "p") == \
            f"p: f={bad!r} is invalid; use one of: transaction, session (any case)"


def test_gomemlimit_in_mib():
    for text, mib in (("943718400", 900), ("943718400B", 900), ("921600KiB", 900), ("900MiB", 900),
                      (" 900MiB ", 900), ("3GiB", 3072), ("2TiB", 2097152), ("1048576", 1), ("0MiB", 0),
                      (1024, 1 / 1024)):
        assert sp._gomemlimit_mib("mattermost.GOMEMLIMIT", json.loads(json.dumps(text))) == mib, text


def test_gomemlimit_off_and_errors():
    assert sp._gomemlimit_mib("f", json.loads('" off "')) == math.inf
    assert sp._gomemlimit_mib("f", json.loads('"off"')) == math.inf
    for field, prefix in (("overrides.mattermost.GOMEMLIMIT", "stack_plan"), ("mattermost.GOMEMLIMIT",
                                                                              "stack_plan_check")):
        assert raised(sp._gomemlimit_mib, field, "900 MiB") == \
            f"{prefix}: {field}='900 MiB' is invalid; use a Go size such as '1105MiB' or 'off'"


def test_find_returns_the_first_path_present():
    data = {"a": {"b": 0, "c": None}, "d": 5}
    assert sp._find(data, "x.y", "a.b", "d") == ("a.b", 0)
    assert sp._find(data, "a.c", "d.e", "d") == ("d", 5)
    assert sp._find(data, "a.c", "d.e", "z") == ("a.c", None)
    assert sp._find(data, "a") == ("a", {"b": 0, "c": None})


def test_postgres_need_mb_adds_every_part():
    # shared_buffers + /dev/shm + maintenance + 3 autovacuum workers + connections x (work_mem x hash + 5) + 3 x 5
    assert sp.postgres_need_mb(256, 128, 64, 32, 4, 2.0, 30) == 256 + 128 + 64 + 96 + 30 * 13 + 15
    assert sp.postgres_need_mb(300, 64, 70, 33, 7, 1.5, 11) == 718.5
    assert sp.postgres_need_mb(1000, 96, 100, 70, 3, 3, 17) == 1000 + 96 + 100 + 210 + 17 * 14 + 15


def test_unlimited():
    assert [sp._unlimited(v) for v in (0, 0.0, 5, 2.5, -1)] == ["0 (unlimited)", "0 (unlimited)", "5 s", "2.5 s",
                                                                "-1 s"]
    assert sp._unlimited(20, "") == "20"
