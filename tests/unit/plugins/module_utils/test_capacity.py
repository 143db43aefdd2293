# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the capacity model (plugins/module_utils/capacity.py): stack_plan and stack_plan_check."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[4]
_SPEC = importlib.util.spec_from_file_location("capacity", ROOT / "plugins" / "module_utils" / "capacity.py")
sp = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(sp)
_RULES_SPEC = importlib.util.spec_from_file_location("capacity_rule_tests", Path(__file__).with_name(
    "test_capacity_rules.py"))
_rules = importlib.util.module_from_spec(_RULES_SPEC)
_RULES_SPEC.loader.exec_module(_rules)
with_value = _rules.with_value  # one helper for both files: a copy of BASE with PATH set to VALUE

ALL = list(sp.OPTIONAL_SERVICES)
LAB = {"replicas": 3, "vcpus": 2, "memory_mb": 4096, "pool_mode": "transaction", "services": ALL}
SEED = {"replicas": 3, "host": {"vcpus": 2, "memory_mb": 4096},
        "postgres": {"max_connections": 100},
        "pgbouncer": {"pool_mode": "session", "max_client_conn": 200, "default_pool_size": 50,
                      "reserve_pool_size": 0},
        "mattermost": {"MaxOpenConns": 80, "MaxIdleConns": 40, "GOMAXPROCS": 2, "memory_mb": 4096, "cpus": 2.0}}
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

inputs = st.fixed_dictionaries({
    "users": st.integers(1, 20_000),
    "replicas": st.integers(1, 16),
    "vcpus": st.one_of(st.integers(1, 64), st.floats(1, 64, allow_nan=False).map(lambda x: round(x, 2))),
    "memory_mb": st.integers(1024, 262_144),
    "pool_mode": st.sampled_from(sp.POOL_MODES),
    "services": st.lists(st.sampled_from(ALL), unique=True),
    "plugins": st.integers(0, 6),
})


HINT = re.compile(r"(vcpus|memory_mb|replicas) >= ([\d.]+)")


def plan_or_none(users, **kwargs):
    """The plan, or None when the host is too small; any other error fails the test."""
    try:
        return sp.stack_plan(users, **kwargs)
    except sp.PlanError as err:
        assert HINT.search(str(err)), str(err)
        return None


def fit(kw):
    """KW with vcpus and memory_mb raised to what the error messages say would work."""
    kw = dict(kw)
    for _attempt in range(4):
        try:
            sp.stack_plan(**kw)
            return kw
        except sp.PlanError as err:
            hints = HINT.findall(str(err))
            assert hints, str(err)
            for field, value in hints:
                kw[field] = max(kw.get(field, 1), float(value) if field == "vcpus" else int(value))
    raise AssertionError(f"the suggested sizes do not fit: {kw}")


def gomemlimit_mib(plan):
    return int(re.fullmatch(r"(\d+)MiB", plan["mattermost"]["GOMEMLIMIT"]).group(1))


def server_connections(plan):
    pg = plan["pgbouncer"]
    pairs = 2 if plan["pgbouncer_other_clients"]["grafana"] else 1
    return min(pairs * (pg["default_pool_size"] + pg["reserve_pool_size"]), pg["max_db_connections"])


def as_strings(node):
    if isinstance(node, dict):
        return {key: as_strings(value) for key, value in node.items()}
    return node if isinstance(node, list) else str(node)


def leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# ----------------------------------------------------------------------------- the lab's plan
def test_lab_plan_fits_with_every_service():
    plan = sp.stack_plan(100, **LAB)
    pgb = plan["pgbouncer"]
    assert plan["memory"]["free_mb"] >= 0 and plan["violations"] == []
    assert pgb["default_pool_size"] == sp.busy_pool(2)
    assert pgb["reserve_pool_size"] == min(20, max(10, 2 * pgb["default_pool_size"]))
    assert plan["postgres"]["max_connections"] == pgb["max_db_connections"] + 6 + 3
    assert plan["mattermost"]["MaxOpenConns"] == 10
    assert plan["mattermost"]["GOMAXPROCS"] == 1
    assert plan["db_load"] == {"steady_busy": 1.25, "peak_busy": 2.5}
    assert set(plan["containers"]) == {"postgres", "pgbouncer", "mattermost", "nginx", *ALL}
    assert sp.stack_plan_check(plan) == []


def test_interface_keys():
    plan = sp.stack_plan(100, **LAB)
    assert list(plan) == ["inputs", "postgres", "pgbouncer", "mattermost", "db_load", "direct_clients",
                          "pgbouncer_other_clients", "containers", "memory", "rationale", "overrides", "violations",
                          "remedies"]
    assert list(plan["inputs"]) == ["users", "replicas", "vcpus", "memory_mb", "pool_mode", "services", "plugins"]
    for section, keys in sp.KEY_ORDER.items():
        assert tuple(plan[section]) == keys
    assert tuple(plan["memory"]) == sp.MEMORY_KEYS
    assert set(plan["direct_clients"]) == {"postgres_exporter", "backup", "archive", "admin", "grafana"}
    assert plan["direct_clients"]["grafana"] == 0
    assert plan["pgbouncer_other_clients"] == {"pgbouncer_exporter": 1, "grafana": 2}
    assert all(set(c) == {"memory_mb", "cpus"} for c in plan["containers"].values())


def test_defaults_and_no_services():
    plan = sp.stack_plan(50)
    assert plan["inputs"] == {"users": 50, "replicas": 1, "vcpus": 2, "memory_mb": 4096,
                              "pool_mode": "transaction", "services": [], "plugins": 0}
    assert set(plan["containers"]) == {"postgres", "pgbouncer", "mattermost", "nginx"}
    assert plan["pgbouncer_other_clients"] == {"pgbouncer_exporter": 0, "grafana": 0}
    assert plan["direct_clients"]["postgres_exporter"] == 0
    assert plan["overrides"] == {} and plan["violations"] == []


def test_numeric_strings_and_integral_floats_are_accepted():
    expected = sp.stack_plan(100, **LAB)
    assert sp.stack_plan("100", replicas="3", vcpus="2", memory_mb="4096", services=ALL) == expected
    assert sp.stack_plan(100.0, replicas=3.0, vcpus=2.0, memory_mb=4096.0, services=tuple(ALL)) == expected
    assert sp.stack_plan(" 100 ", **dict(LAB, services=list(reversed(ALL)) + ["grafana"])) == expected
    assert sp.stack_plan(100, vcpus="2.5", services=None)["inputs"]["vcpus"] == 2.5


@pytest.mark.parametrize("kwargs, field, hint", [
    ({"users": "abc"}, "users", "integer > 0"),
    ({"users": None}, "users", "integer > 0"),
    ({"users": True}, "users", "integer > 0"),
    ({"users": 0}, "users", "integer > 0"),
    ({"users": -5}, "users", "integer > 0"),
    ({"users": 1.5}, "users", "integer > 0"),
    ({"users": "1.5"}, "users", "integer > 0"),
    ({"users": float("nan")}, "users", "integer > 0"),
    ({"replicas": 0}, "replicas", "integer >= 1"),
    ({"replicas": "three"}, "replicas", "integer >= 1"),
    ({"replicas": False}, "replicas", "integer >= 1"),
    ({"vcpus": 0.5}, "vcpus", "number >= 1"),
    ({"vcpus": "two"}, "vcpus", "number >= 1"),
    ({"vcpus": None}, "vcpus", "number >= 1"),
    ({"memory_mb": 0}, "memory_mb", "integer > 0"),
    ({"memory_mb": 4096.5}, "memory_mb", "integer > 0"),
    ({"memory_mb": [4096]}, "memory_mb", "integer > 0"),
    ({"pool_mode": "statement"}, "pool_mode", "transaction, session"),
    ({"plugins": -1}, "plugins", "integer >= 0"),
    ({"plugins": 1.5}, "plugins", "integer >= 0"),
    ({"pool_mode": None}, "pool_mode", "transaction, session"),
    ({"services": ["grafana", "kibana"]}, "services", "prometheus, alertmanager, grafana"),
    ({"services": "grafana"}, "services", "list of names"),
    ({"services": 3}, "services", "list of names"),
])
def test_bad_input_names_field_value_and_remedy(kwargs, field, hint):
    args = dict({"users": 100}, **kwargs)
    with pytest.raises(sp.PlanError) as err:
        sp.stack_plan(args.pop("users"), **args)
    message = str(err.value)
    assert f"{field}=" in message and hint in message
    bad = kwargs.get(field, kwargs.get("users"))
    shown = "kibana" if field == "services" and isinstance(bad, list) else repr(bad)
    assert shown in message


def test_too_small_host_names_the_smallest_memory_that_fits():
    with pytest.raises(sp.PlanError) as err:
        sp.stack_plan(600, replicas=2, vcpus=2, memory_mb=4096, services=ALL)
    need = int(re.search(r"use memory_mb >= (\d+)", str(err.value)).group(1))
    assert "memory_mb=4096 is too small" in str(err.value) and "[memory_fit]" in str(err.value)
    assert sp.stack_plan(600, replicas=2, vcpus=2, memory_mb=need, services=ALL)["memory"]["free_mb"] >= 0
    for smaller in range(need - sp.ROUND_MB, 4096, -sp.ROUND_MB):
        with pytest.raises(sp.PlanError):
            sp.stack_plan(600, replicas=2, vcpus=2, memory_mb=smaller, services=ALL)


def test_database_load_the_pool_cannot_carry_is_refused_naming_what_would_fit():
    with pytest.raises(sp.PlanError) as err:
        sp.stack_plan(1000, replicas=1, vcpus=2, memory_mb=4096, services=ALL)
    message = str(err.value)
    assert "[server_steady]" in message and "12.5 database connections busy" in message
    allowed = sp.stack_plan(1000, replicas=1, vcpus=2, memory_mb=4096, services=ALL, allow_violations=True)
    assert all(hint in message for hint in allowed["remedies"]) and len(allowed["remedies"]) == 2
    vcpus = int(re.search(r"use vcpus >= (\d+)", message).group(1))
    users = int(re.search(r"users <= (\d+)", message).group(1))
    pool = int(re.search(r"default_pool_size >= (\d+)", message).group(1))
    big = dict(memory_mb=65536, services=ALL)
    assert sp.stack_plan(1000, vcpus=vcpus, **big)["violations"] == []
    fewer = sp.stack_plan(1000, vcpus=vcpus - 1, allow_violations=True, **big)
    assert "server_steady" in {v["rule"] for v in fewer["violations"]}
    assert sp.stack_plan(users, vcpus=2, **big)["violations"] == []
    assert sp.stack_plan(1000, vcpus=2, overrides={"pgbouncer": {"default_pool_size": pool}}, **big)["violations"] == []
    with pytest.raises(sp.PlanError, match=r"\[server_steady\]"):
        sp.stack_plan(1000, vcpus=2, overrides={"pgbouncer": {"default_pool_size": pool - 1}}, **big)


def test_plugins_are_budgeted_outside_gomemlimit():
    plain, two = sp.stack_plan(100, **LAB), sp.stack_plan(100, **dict(LAB, plugins=2, memory_mb=8192))
    assert two["mattermost"]["plugin_memory_mb"] == 2 * sp.PLUGIN_MB
    assert two["mattermost"]["memory_mb"] == plain["mattermost"]["memory_mb"] + 2 * sp.PLUGIN_MB
    assert two["mattermost"]["GOMEMLIMIT"] == plain["mattermost"]["GOMEMLIMIT"]


def test_too_few_vcpus_names_what_would_work():
    with pytest.raises(sp.PlanError, match=r"vcpus=2 is too few .* use vcpus >= 5 .* or replicas <= 4"):
        sp.stack_plan(100, replicas=10, vcpus=2)
    with pytest.raises(sp.PlanError, match=r"vcpus=2 is too few for 5000 users .* use vcpus >= 5 "):
        sp.stack_plan(5000, replicas=1, vcpus=2, memory_mb=65536)


# ----------------------------------------------------------------------------- properties
@PROPS
@given(inputs)
def test_plan_invariants(kw):
    kw = fit(kw)
    plan = sp.stack_plan(**kw)
    mm, pgb, pg = plan["mattermost"], plan["pgbouncer"], plan["postgres"]
    replicas, vcpus, host = kw["replicas"], plan["inputs"]["vcpus"], kw["memory_mb"]
    others = sum(plan["pgbouncer_other_clients"].values())
    assert replicas * mm["MaxOpenConns"] + others <= pgb["max_client_conn"]
    direct = sum(plan["direct_clients"].values())
    assert server_connections(plan) + direct + pg["superuser_reserved_connections"] <= pg["max_connections"]
    if kw["pool_mode"] == "session":
        assert replicas * mm["MaxOpenConns"] <= pgb["default_pool_size"]
    assert 1 <= mm["MaxIdleConns"] <= mm["MaxOpenConns"] <= sp.MAX_OPEN_CONNS
    assert 1 <= mm["GOMAXPROCS"] <= vcpus
    main = mm["memory_mb"] - mm["plugin_memory_mb"]
    assert mm["plugin_memory_mb"] == kw["plugins"] * sp.PLUGIN_MB
    assert 0.90 * main <= gomemlimit_mib(plan) <= 0.95 * main
    assert replicas * mm["cpus"] <= vcpus + 1e-9
    assert all(c["cpus"] <= vcpus for c in plan["containers"].values())
    total = sum(c["memory_mb"] for c in plan["containers"].values()) + (replicas - 1) * mm["memory_mb"]
    assert total == plan["memory"]["containers_total_mb"]
    assert total + plan["memory"]["os_reserve_mb"] <= host
    assert plan["memory"]["free_mb"] == host - total - plan["memory"]["os_reserve_mb"] >= 0
    pg_limit = plan["containers"]["postgres"]["memory_mb"]
    assert pg["shared_buffers_mb"] + pg["max_connections"] * pg["work_mem_mb"] <= pg_limit
    assert set(plan["containers"]) == {"postgres", "pgbouncer", "mattermost", "nginx", *kw["services"]}


@PROPS
@given(inputs)
def test_plan_is_deterministic_json_and_passes_its_own_check(kw):
    kw = fit(kw)
    plan = sp.stack_plan(**kw)
    assert plan == sp.stack_plan(**kw)
    assert json.loads(json.dumps(plan)) == plan
    assert sp.stack_plan_check(plan) == []
    assert sp.stack_plan_check(as_strings(plan)) == []  # Jinja may hand the numbers over as strings
    skip = ("inputs", "rationale", "overrides", "violations", "remedies")
    settings = dict(leaves({k: v for k, v in plan.items() if k not in skip}))
    assert set(plan["rationale"]) == set(settings)
    for path, value in settings.items():
        assert plan["rationale"][path], path
        kind = {"cpus": float, "pool_mode": str, "GOMEMLIMIT": str, "hash_mem_multiplier": float,
                "steady_busy": (int, float), "peak_busy": (int, float)}.get(path.split(".")[-1], int)
        assert isinstance(value, kind) and not isinstance(value, bool), path


@PROPS
@given(inputs, st.integers(1, 50_000))
def test_more_users_never_shrink_pools_or_limits(kw, extra):
    kw = fit(kw)
    small = sp.stack_plan(**kw)
    big = plan_or_none(**dict(kw, users=kw["users"] + extra))
    if big is None:
        return  # a larger user count that no longer fits raises (checked by plan_or_none) instead of shrinking
    for section, key in (("mattermost", "MaxOpenConns"), ("mattermost", "MaxIdleConns"),
                         ("pgbouncer", "default_pool_size"), ("pgbouncer", "reserve_pool_size"),
                         ("pgbouncer", "max_client_conn"), ("pgbouncer", "max_db_connections"),
                         ("postgres", "max_connections"), ("mattermost", "memory_mb"),
                         ("memory", "containers_total_mb")):
        if key == "containers_total_mb" and big["memory"]["sized_for_mb"] < small["memory"]["sized_for_mb"]:
            continue  # PostgreSQL sized down on a tighter host (below)
        assert big[section][key] >= small[section][key], (section, key)
    for name, container in small["containers"].items():
        if name == "postgres" and big["memory"]["sized_for_mb"] < small["memory"]["sized_for_mb"]:
            continue  # a tighter host sizes PostgreSQL's settings down instead of refusing the plan
        assert big["containers"][name]["memory_mb"] >= container["memory_mb"], name


@PROPS
@given(inputs, st.integers(1, 16_384))
def test_memory_fit_is_monotone_in_host_memory(kw, extra):
    kw = fit(kw)
    bigger = sp.stack_plan(**dict(kw, memory_mb=kw["memory_mb"] + extra))  # raises if a bigger host failed
    assert bigger["memory"]["free_mb"] >= 0
    assert bigger["memory"]["sized_for_mb"] >= sp.stack_plan(**kw)["memory"]["sized_for_mb"]


def test_a_bigger_host_fits_where_a_smaller_one_does():
    # Once a regression: 2 000 users on 2 replicas fitted 5 980 MB but not 6 004 (shared_buffers stepped up).
    kw = fit({"users": 2000, "replicas": 2, "vcpus": 2, "memory_mb": 4096})
    for memory_mb in range(kw["memory_mb"], kw["memory_mb"] + 4096, 8):
        assert sp.stack_plan(**dict(kw, memory_mb=memory_mb))["memory"]["free_mb"] >= 0, memory_mb


@PROPS
@given(inputs)
def test_errors_name_a_size_that_fits(kw):
    plan_or_none(**kw)  # any error is about vcpus or memory_mb and names a value that would work
    assert sp.stack_plan(**fit(kw))["memory"]["free_mb"] >= 0


# ----------------------------------------------------------------------------- stack_plan_check
def test_check_reports_every_contradiction_of_the_seed():
    violations = sp.stack_plan_check(SEED)
    rules = [v["rule"] for v in violations]
    assert rules == ["client_conn_capacity", "session_pool", "session_max_connections", "mattermost_cpus",
                     "memory_fit"]
    text = " ".join(v["message"] for v in violations)
    for fragment in ("= 240 > max_client_conn 200", "240 Mattermost connections > default_pool_size 50",
                     "> max_connections 100", "3 replicas x 2 CPUs = 6 > 2 vCPUs", "12288 MB > host 4096 MB"):
        assert fragment in text


def test_check_reports_the_values_in_force():
    in_force = copy.deepcopy(SEED)
    in_force["mattermost"].update(MaxOpenConns=30, MaxIdleConns=10)
    violations = {v["rule"]: v["message"] for v in sp.stack_plan_check(in_force)}
    assert "3 x 30 = 90 Mattermost connections > default_pool_size 50" in violations["session_pool"]
    assert "client_conn_capacity" not in violations


def test_check_skips_rules_without_inputs():
    assert sp.stack_plan_check({}) == []
    assert sp.stack_plan_check({"mattermost": {"MaxOpenConns": 500}}) == []
    assert sp.stack_plan_check({"pgbouncer": {"max_client_conn": 10}, "mattermost": {"MaxOpenConns": 500}}) == []
    assert [v["rule"] for v in sp.stack_plan_check(
        {"replicas": "2", "pgbouncer": {"max_client_conn": "10"}, "mattermost": {"MaxOpenConns": "6"}})] == [
        "client_conn_capacity"]


# Each rule's boundary pair (at the limit passes, one step past fails, with its exact message) is the
# BOUNDARIES table of test_capacity_rules.py, the stdlib-only file the mutation run uses.


@pytest.mark.parametrize("path, value", [
    ("replicas", 0), ("mattermost.MaxOpenConns", -10), ("mattermost.MaxOpenConns", 0),
    ("pgbouncer.default_pool_size", 0), ("pgbouncer.max_client_conn", 0), ("postgres.max_connections", 0),
    ("pgbouncer.reserve_pool_size", -1), ("pgbouncer.max_db_connections", -1), ("pgbouncer.query_wait_timeout", -1),
    ("mattermost.memory_mb", 0), ("mattermost.cpus", 0), ("host.vcpus", -2), ("host.memory_mb", 0),
    ("mattermost.QueryTimeout", 0), ("postgres.hash_mem_multiplier", 0.5), ("postgres.autovacuum_work_mem_mb", 0),
    ("containers.grafana.memory_mb", 0), ("direct_clients.backup", -1),
])
def test_check_rejects_impossible_counts_naming_the_field(path, value):
    with pytest.raises(sp.PlanError, match=re.escape(f"{path}={value!r}")):
        sp.stack_plan_check(with_value({"host": {"vcpus": 2}, "replicas": 1}, path, value))


def test_check_reads_pool_mode_in_any_case_and_refuses_unknown_modes():
    data = {"replicas": 3, "mattermost": {"MaxOpenConns": 10}, "pgbouncer": {"default_pool_size": 5}}
    for mode in ("session", "Session", " SESSION "):
        assert "session_pool" in [v["rule"] for v in sp.stack_plan_check(with_value(data, "pgbouncer.pool_mode", mode))]
    assert sp.stack_plan_check(with_value(data, "pgbouncer.pool_mode", "Transaction")) == []
    with pytest.raises(sp.PlanError, match="pgbouncer.pool_mode='statement'"):
        sp.stack_plan_check(with_value(data, "pgbouncer.pool_mode", "statement"))


def test_gomemlimit_units_and_off():
    base = {"mattermost": {"memory_mb": 1000}}
    for value in ("943718400", "943718400B", "921600KiB", "900MiB", "1GiB"):
        violations = sp.stack_plan_check(with_value(base, "mattermost.GOMEMLIMIT", value))
        assert bool(violations) == (value == "1GiB"), value
    [off] = sp.stack_plan_check(with_value(base, "mattermost.GOMEMLIMIT", "off"))
    assert "GOMEMLIMIT off" in off["message"] and "OOM" in off["message"]


# ----------------------------------------------------------------------------- overrides: one effective plan
def test_overrides_are_applied_and_checked():
    overrides = {"pgbouncer": {"default_pool_size": 10, "pool_mode": "Transaction"},
                 "containers": {"grafana": {"memory_mb": 192}}}
    plan = sp.stack_plan(100, **LAB, overrides=overrides)
    assert plan["pgbouncer"]["default_pool_size"] == 10 and plan["pgbouncer"]["pool_mode"] == "transaction"
    assert plan["containers"]["grafana"]["memory_mb"] == 192
    assert plan["memory"]["containers_total_mb"] == sp.stack_plan(100, **LAB)["memory"]["containers_total_mb"] + 32
    assert plan["overrides"] == {"pgbouncer.default_pool_size": 10, "pgbouncer.pool_mode": "transaction",
                                 "containers.grafana.memory_mb": 192}
    assert "Overridden" in plan["rationale"]["pgbouncer.default_pool_size"]


def test_an_override_that_breaks_a_rule_is_refused_or_reported():
    broken = {"pgbouncer": {"max_client_conn": 5}}
    with pytest.raises(sp.PlanError, match=r"\[client_conn_capacity\].*> max_client_conn 5"):
        sp.stack_plan(100, **LAB, overrides=broken)
    plan = sp.stack_plan(100, **LAB, overrides=broken, allow_violations=True)
    assert [v["rule"] for v in plan["violations"]] == ["client_conn_capacity"] and plan["remedies"] == []
    assert plan["pgbouncer"]["max_client_conn"] == 5


def test_mattermost_memory_override_is_one_setting_with_its_container():
    plan = sp.stack_plan(100, **LAB, overrides={"mattermost": {"memory_mb": 512, "GOMEMLIMIT": "461MiB"}},
                         allow_violations=True)
    assert plan["containers"]["mattermost"]["memory_mb"] == 512 and plan["mattermost"]["memory_mb"] == 512
    with pytest.raises(sp.PlanError, match=r"\[gomemlimit_headroom\]"):
        sp.stack_plan(100, **LAB, overrides={"containers": {"mattermost": {"memory_mb": 1024}}})


@pytest.mark.parametrize("overrides, field", [
    ({"pgbouncer": {"pool_sise": 5}}, "overrides.pgbouncer.pool_sise"),
    ({"mattermost": {"replicas": 2}}, "overrides.mattermost.replicas"),
    ({"nginx": {"workers": 2}}, "overrides.nginx"),
    ({"postgres": {"max_connections": "many"}}, "overrides.postgres.max_connections"),
    ({"pgbouncer": {"pool_mode": "statement"}}, "overrides.pgbouncer.pool_mode"),
    ({"mattermost": {"GOMEMLIMIT": "lots"}}, "overrides.mattermost.GOMEMLIMIT"),
    ({"containers": {"kibana": {"memory_mb": 64}}}, "overrides.containers.kibana"),
    ({"containers": {"grafana": {"memory_mb": 64}}}, "overrides.containers.grafana"),  # not in services
    ({"containers": {"nginx": {"memory": 64}}}, "overrides.containers.nginx"),
    (["pgbouncer"], "overrides"),
])
def test_bad_overrides_name_the_field(overrides, field):
    with pytest.raises(sp.PlanError, match=re.escape(field) + "="):
        sp.stack_plan(100, replicas=1, overrides=overrides)


def test_session_mode_with_transaction_sized_pool_fails_both_session_rules():
    plan = sp.stack_plan(1000, replicas=2, vcpus=8, memory_mb=32768, services=ALL)
    plan["pgbouncer"]["pool_mode"] = "session"
    assert {"session_pool", "session_max_connections"} <= {v["rule"] for v in sp.stack_plan_check(plan)}


@settings(max_examples=100, deadline=None)
@given(inputs, st.dictionaries(st.sampled_from(["postgres", "pgbouncer", "mattermost", "containers", "memory"]),
                               st.integers(0, 10_000), min_size=1))
def test_check_of_a_tampered_plan_returns_well_formed_violations(kw, tamper):
    plan = sp.stack_plan(**fit(kw))
    for section, value in tamper.items():
        key = sorted(plan[section])[value % len(plan[section])]
        plan[section][key] = {"memory_mb": value, "cpus": value / 100} if section == "containers" else value
    rules = {rule[0] for rule in sp.RULES}
    try:
        violations = sp.stack_plan_check(plan)
    except sp.PlanError as err:  # a value no setting may take (0 where a count must be positive)
        assert re.search(r"stack_plan_check: [\w.]+=\S+ is invalid; use ", str(err)), str(err)
        return
    for violation in violations:
        assert set(violation) == {"rule", "message"} and violation["rule"] in rules
        assert isinstance(violation["message"], str) and re.search(r"\d", violation["message"])


@pytest.mark.parametrize("bad", [["not", "a", "dict"], "text", None])
def test_check_rejects_a_non_dict(bad):
    with pytest.raises(sp.PlanError, match="must be a dict"):
        sp.stack_plan_check(bad)


def test_check_rejects_non_numbers_naming_the_field():
    with pytest.raises(sp.PlanError, match=r"postgres.max_connections='many'"):
        sp.stack_plan_check({"postgres": {"max_connections": "many"}})
    with pytest.raises(sp.PlanError, match=r"mattermost.GOMEMLIMIT='lots'.*1105MiB"):
        sp.stack_plan_check({"mattermost": {"GOMEMLIMIT": "lots"}})


# ----------------------------------------------------------------------------- plumbing
def test_docs_plans_md_is_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "render_plans.py"), "--check"],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
