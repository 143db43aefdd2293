"""Nothing gets around the capacity plan: the site playbook refuses, before anything changes, a planned value
set in a free-form setting, a removed role variable, and an override that breaks a rule of the model.

The playbook runs in check mode against this machine (the lab inventory without MMOPS_LAB_HOST), without
become and without the registry check: it needs neither root nor a network, and changes nothing. The host size
is the lab's (2 vCPU / 4096 MB), so the plan does not depend on this machine.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAB_SIZE = {"stack_host_vcpus": 2, "stack_host_memory_mb": 4096}
BREAKING_OVERRIDE = {"pgbouncer": {"max_client_conn": 5}}


def lab_violations(overrides):
    """The violations the capacity model itself finds in the lab plan with OVERRIDES, as the stack role shows them."""
    spec = importlib.util.spec_from_file_location("capacity", ROOT / "plugins/module_utils/capacity.py")
    capacity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capacity)
    lab = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/main.yml").read_text())
    plan = capacity.stack_plan(lab["stack_users"], replicas=lab["stack_mattermost_replicas"],
                               vcpus=LAB_SIZE["stack_host_vcpus"], memory_mb=LAB_SIZE["stack_host_memory_mb"],
                               pool_mode=lab["stack_pgbouncer_pool_mode"], services=lab["stack_services"],
                               overrides=overrides, allow_violations=True)
    return [f"[{v['rule']}] {v['message']}." for v in plan["violations"]]


def site_check(extra_vars):
    env = {key: value for key, value in os.environ.items() if key != "MMOPS_LAB_HOST"}
    env.update({"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    args = {"ansible_become": False, "ansible_python_interpreter": sys.executable, "stack_registry_check_url": "",
            **LAB_SIZE, **extra_vars}
    command = ["ansible-playbook", "site.yml", "-i", "inventories/lab", "--check", "-e", json.dumps(args)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env, check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("extra_vars, messages", [
    ({"mattermost_env": {"MM_SQLSETTINGS_MAXOPENCONNS": "40", "MM_PLUGINSETTINGS_AUTOMATICPREPACKAGEDPLUGINS": "true"}},
     ["mattermost_env.MM_SQLSETTINGS_MAXOPENCONNS sets a planned value: set stack_plan_overrides: "
      "{mattermost: {MaxOpenConns: N}} instead.",
      "mattermost_env.MM_PLUGINSETTINGS_AUTOMATICPREPACKAGEDPLUGINS sets a planned value: "
      "set stack_mattermost_plugins instead."]),
    ({"pgbouncer_default_pool_size": 20},
     ["pgbouncer_default_pool_size was removed: set stack_plan_overrides: {pgbouncer: {default_pool_size: N}}."]),
    ({"postgres_memory_mb": 2048, "postgres_settings": {"Work_Mem": "64MB"}},
     ["postgres_memory_mb was removed: set stack_plan_overrides: {containers: {postgres: {memory_mb: N}}}.",
      "postgres_settings.work_mem sets a planned value: set stack_plan_overrides: {postgres: {work_mem_mb: N}} "
      "instead."]),
    ({"stack_plan_overrides": BREAKING_OVERRIDE},
     [*lab_violations(BREAKING_OVERRIDE), "Overridden: pgbouncer.max_client_conn=5.",
      "Change stack_plan_overrides or the plan inputs (stack_users, stack_mattermost_replicas, stack_host_vcpus, "
      "stack_host_memory_mb, stack_mattermost_plugins)"]),
    ({"stack_users": 1000},
     ["[server_steady] the steady load keeps 12.5 database connections busy", "What would fit: use vcpus >= ",
      ", or users <= ", "stack_plan_overrides.pgbouncer.default_pool_size >= "]),
    ({"stack_plan_overrides": {"pgbouncer": {"pool_size": 10}}},
     ["overrides.pgbouncer.pool_size=10 is invalid; use one of: pool_mode, max_client_conn, default_pool_size"]),
], ids=["planned-env", "removed-variable", "removed-limit-and-planned-setting", "override-breaks-a-rule",
        "too-many-users-for-the-pool", "unknown-override"])
def test_bypass_is_refused_before_anything_changes(extra_vars, messages):
    assert messages
    rc, out = site_check(extra_vars)
    flat = " ".join(out.split())
    assert rc != 0
    for message in messages:
        assert message in flat, out[-3000:]
    recap = re.search(r"ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", out)
    assert recap and recap.groups() == ("0", "1"), out[-3000:]
    # The failure is in the pre_tasks: no role that changes the host has started.
    assert not re.search(r"TASK \[mattermost_ops\.stack\.(firewall|docker) :", out), out[-3000:]


def test_the_breaking_override_breaks_the_client_rule():
    assert [m for m in lab_violations(BREAKING_OVERRIDE) if m.startswith("[client_conn_capacity] ")]
    assert not lab_violations(None)


def test_enforce_false_goes_on_with_every_violation_shown(tmp_path):
    """stack_plan_enforce=false (experiments such as tools/benchmark.py) deploys the overridden plan: the check
    still lists every violation, as a failed-and-ignored task, and the plan the roles read has the override."""
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "name": "The plan with stack_plan_enforce=false", "hosts": "localhost", "connection": "local",
        "gather_facts": True,
        "tasks": [{"name": "Plan", "ansible.builtin.include_role": {"name": "mattermost_ops.stack.stack"}},
                  {"name": "The override is in the plan", "ansible.builtin.assert": {
                      "that": ["stack_plan.pgbouncer.max_client_conn | int == 5"]}}]}]))
    args = {"ansible_python_interpreter": sys.executable, "stack_users": 100, "stack_mattermost_replicas": 3,
            **LAB_SIZE, "stack_plan_overrides": BREAKING_OVERRIDE, "stack_plan_enforce": False}
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(["ansible-playbook", "-i", "localhost,", str(play), "-e", json.dumps(args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=180, env=env, check=False)
    out = result.stdout + result.stderr
    flat = " ".join(out.split())
    assert result.returncode == 0, out[-3000:]
    assert "...ignoring" in out and re.search(r"failed=0 .*ignored=1", flat), out[-3000:]
    assert "The effective capacity plan breaks the capacity model" in flat, out[-3000:]
    assert "[client_conn_capacity]" in flat and "> max_client_conn 5." in flat, out[-3000:]
