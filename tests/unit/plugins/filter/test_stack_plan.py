# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the capacity planner filters stack_plan and stack_plan_check."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[4]
_SPEC = importlib.util.spec_from_file_location("stack_plan_filter", ROOT / "plugins" / "filter" / "stack_plan.py")
sp = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(sp)

ALL = list(sp.OPTIONAL_SERVICES)
LAB = {"replicas": 3, "vcpus": 2, "memory_mb": 4096, "pool_mode": "transaction", "services": ALL}
SEED = {"replicas": 3, "host": {"vcpus": 2, "memory_mb": 4096},
        "postgres": {"max_connections": 100},
        "pgbouncer": {"pool_mode": "session", "max_client_conn": 200, "default_pool_size": 50,
                      "reserve_pool_size": 0},
        "mattermost": {"MaxOpenConns": 80, "MaxIdleConns": 40, "GOMAXPROCS": 2, "memory_mb": 4096, "cpus": 2.0}}
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

inputs = st.fixed_dictionaries({
    "users": st.integers(1, 100_000),
    "replicas": st.integers(1, 16),
    "vcpus": st.one_of(st.integers(1, 64), st.floats(1, 64, allow_nan=False).map(lambda x: round(x, 2))),
    "memory_mb": st.integers(1024, 262_144),
    "pool_mode": st.sampled_from(sp.POOL_MODES),
    "services": st.lists(st.sampled_from(ALL), unique=True),
})


def plan_or_none(users, **kwargs):
    """The plan, or None when the host is too small; any other error fails the test."""
    try:
        return sp.stack_plan(users, **kwargs)
    except AnsibleFilterError as err:
        assert re.search(r"(memory_mb|vcpus)=\S+ is too (small|few) .* use (memory_mb|vcpus) >= [\d.]+", str(err))
        return None


def fit(kw):
    """KW with vcpus and memory_mb raised to what the error messages say would work."""
    kw = dict(kw)
    for _attempt in range(3):
        try:
            sp.stack_plan(**kw)
            return kw
        except AnsibleFilterError as err:
            field, value = re.search(r"use (vcpus|memory_mb) >= ([\d.]+)", str(err)).groups()
            kw[field] = float(value) if field == "vcpus" else int(value)
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
    assert plan["memory"]["free_mb"] >= 0
    assert plan["postgres"]["max_connections"] == 26
    assert plan["pgbouncer"]["default_pool_size"] == 5
    assert plan["pgbouncer"]["reserve_pool_size"] == 10
    assert plan["mattermost"]["MaxOpenConns"] == 10
    assert plan["mattermost"]["GOMAXPROCS"] == 1
    assert set(plan["containers"]) == {"postgres", "pgbouncer", "mattermost", "nginx", *ALL}
    assert sp.stack_plan_check(plan) == []


def test_interface_keys():
    plan = sp.stack_plan(100, **LAB)
    assert list(plan) == ["inputs", "postgres", "pgbouncer", "mattermost", "direct_clients",
                          "pgbouncer_other_clients", "containers", "memory", "rationale"]
    assert list(plan["inputs"]) == ["users", "replicas", "vcpus", "memory_mb", "pool_mode", "services"]
    for section, keys in sp.KEY_ORDER.items():
        if keys:
            assert tuple(plan[section]) == keys
    assert set(plan["direct_clients"]) == {"postgres_exporter", "backup", "archive", "admin", "grafana"}
    assert plan["direct_clients"]["grafana"] == 0
    assert plan["pgbouncer_other_clients"] == {"pgbouncer_exporter": 1, "grafana": 2}
    assert all(set(c) == {"memory_mb", "cpus"} for c in plan["containers"].values())


def test_defaults_and_no_services():
    plan = sp.stack_plan(50)
    assert plan["inputs"] == {"users": 50, "replicas": 1, "vcpus": 2, "memory_mb": 4096,
                              "pool_mode": "transaction", "services": []}
    assert set(plan["containers"]) == {"postgres", "pgbouncer", "mattermost", "nginx"}
    assert plan["pgbouncer_other_clients"] == {"pgbouncer_exporter": 0, "grafana": 0}
    assert plan["direct_clients"]["postgres_exporter"] == 0


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
    ({"pool_mode": None}, "pool_mode", "transaction, session"),
    ({"services": ["grafana", "kibana"]}, "services", "prometheus, alertmanager, grafana"),
    ({"services": "grafana"}, "services", "list of names"),
    ({"services": 3}, "services", "list of names"),
])
def test_bad_input_names_field_value_and_remedy(kwargs, field, hint):
    args = dict({"users": 100}, **kwargs)
    with pytest.raises(AnsibleFilterError) as err:
        sp.stack_plan(args.pop("users"), **args)
    message = str(err.value)
    assert f"{field}=" in message and hint in message
    bad = kwargs.get(field, kwargs.get("users"))
    shown = "kibana" if field == "services" and isinstance(bad, list) else repr(bad)
    assert shown in message


def test_too_small_host_names_the_smallest_memory_that_fits():
    with pytest.raises(AnsibleFilterError) as err:
        sp.stack_plan(1000, replicas=1, vcpus=2, memory_mb=4096, services=ALL)
    need = int(re.search(r"use memory_mb >= (\d+)", str(err.value)).group(1))
    assert "memory_mb=4096" in str(err.value)
    assert sp.stack_plan(1000, replicas=1, vcpus=2, memory_mb=need, services=ALL)["memory"]["free_mb"] >= 0
    for smaller in range(need - sp.ROUND_MB, 4096, -sp.ROUND_MB):
        with pytest.raises(AnsibleFilterError):
            sp.stack_plan(1000, replicas=1, vcpus=2, memory_mb=smaller, services=ALL)


def test_too_few_vcpus_names_what_would_work():
    with pytest.raises(AnsibleFilterError, match=r"vcpus=2 is too few .* use vcpus >= 5 .* or replicas <= 4"):
        sp.stack_plan(100, replicas=10, vcpus=2)
    with pytest.raises(AnsibleFilterError, match=r"vcpus=2 is too few for 5000 users .* use vcpus >= 5 "):
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
    assert 0.90 * mm["memory_mb"] <= gomemlimit_mib(plan) <= 0.95 * mm["memory_mb"]
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
    settings = dict(leaves({k: v for k, v in plan.items() if k not in ("inputs", "rationale")}))
    assert set(plan["rationale"]) == set(settings)
    for path, value in settings.items():
        assert plan["rationale"][path], path
        kind = {"cpus": float, "pool_mode": str, "GOMEMLIMIT": str}.get(path.split(".")[-1], int)
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
        assert big[section][key] >= small[section][key], (section, key)
    for name, container in small["containers"].items():
        assert big["containers"][name]["memory_mb"] >= container["memory_mb"], name


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


@pytest.mark.parametrize("change, rule", [
    ({"pgbouncer": {"max_client_conn": 20}}, "client_conn_capacity"),
    ({"postgres": {"max_connections": 20}}, "server_conn_capacity"),
    ({"pgbouncer": {"pool_mode": "session"}}, "session_pool"),
    ({"mattermost": {"MaxIdleConns": 11}}, "idle_le_open"),
    ({"pgbouncer": {"min_pool_size": 6}}, "min_pool_le_pool"),
    ({"mattermost": {"GOMAXPROCS": 3}}, "gomaxprocs_range"),
    ({"mattermost": {"GOMAXPROCS": 2}}, "gomaxprocs_quota"),
    ({"mattermost": {"GOMEMLIMIT": "448MiB"}}, "gomemlimit_headroom"),
    ({"mattermost": {"GOMEMLIMIT": "1GiB"}}, "gomemlimit_headroom"),
    ({"mattermost": {"cpus": 1.0}}, "mattermost_cpus"),
    ({"containers": {"prometheus": {"cpus": 4}}}, "container_cpus"),
    ({"containers": {"grafana": {"memory_mb": 2048}}}, "memory_fit"),
    ({"postgres": {"work_mem_mb": 64}}, "pg_memory"),
    ({"pgbouncer": {"query_wait_timeout": 30}}, "query_wait_timeout"),
    ({"pgbouncer": {"reserve_pool_timeout": 15}}, "reserve_before_wait"),
    ({"pgbouncer": {"server_idle_timeout": 7200}}, "server_idle_le_lifetime"),
])
def test_each_rule_fires_on_a_broken_plan(change, rule):
    plan = sp.stack_plan(100, **LAB)
    for section, values in change.items():
        for key, value in values.items():
            if isinstance(value, dict):
                plan[section][key].update(value)
            else:
                plan[section][key] = value
    assert rule in [v["rule"] for v in sp.stack_plan_check(plan)]


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
    for violation in sp.stack_plan_check(plan):
        assert set(violation) == {"rule", "message"} and violation["rule"] in rules
        assert isinstance(violation["message"], str) and re.search(r"\d", violation["message"])


@pytest.mark.parametrize("bad", [["not", "a", "dict"], "text", None])
def test_check_rejects_a_non_dict(bad):
    with pytest.raises(AnsibleFilterError, match="must be a dict"):
        sp.stack_plan_check(bad)


def test_check_rejects_non_numbers_naming_the_field():
    with pytest.raises(AnsibleFilterError, match=r"postgres.max_connections='many'"):
        sp.stack_plan_check({"postgres": {"max_connections": "many"}})
    with pytest.raises(AnsibleFilterError, match=r"mattermost.GOMEMLIMIT='lots'.*1105MiB"):
        sp.stack_plan_check({"mattermost": {"GOMEMLIMIT": "lots"}})


# ----------------------------------------------------------------------------- plumbing
def test_filter_module_exposes_both_filters():
    assert sp.FilterModule().filters() == {"stack_plan": sp.stack_plan, "stack_plan_check": sp.stack_plan_check}


def test_docs_plans_md_is_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "render_plans.py"), "--check"],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
