"""Shared fixtures of the offline scenario's checks. They run on the controller and look into
the instance (and, through `docker exec`, into the stack's containers), so what they see is the
running stack, not the templates."""
import importlib.util
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]


def _load_capacity():
    """The capacity model itself (plain Python), loaded by path: no Ansible or collection path needed."""
    spec = importlib.util.spec_from_file_location("capacity", ROOT / "plugins/module_utils/capacity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def inventory_vars():
    merged = {}
    for path in sorted((ROOT / "inventories/lab/group_vars/all").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    for path in sorted((SCENARIO / "host_vars/mmops-offline").glob("*.yml")):  # main.yml, lab-images.yml
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


@pytest.fixture(scope="session")
def plan(inventory_vars):
    """The effective plan the roles must have applied, computed independently from the inventory."""
    v = inventory_vars
    return _load_capacity().stack_plan(
        v["stack_users"], replicas=v["stack_mattermost_replicas"], vcpus=v["stack_host_vcpus"],
        memory_mb=v["stack_host_memory_mb"], pool_mode=v.get("stack_pgbouncer_pool_mode", "transaction"),
        services=v.get("stack_services", []), plugins=v.get("stack_mattermost_plugins", 0),
        overrides=v.get("stack_plan_overrides") or None)


@pytest.fixture
def secret(host):
    def read(name):
        return host.check_output(f"cat /etc/mattermost-ops/secrets/{shlex.quote(name)}")
    return read


@pytest.fixture
def psql(host):
    """Run SQL with psql inside a container; returns (rc, stdout, stderr)."""
    def run(container, conninfo, sql, password):
        cmd = (f"docker exec -e PGPASSWORD={shlex.quote(password)} -e PGCONNECT_TIMEOUT=5 {container} "
               f"psql -X -q -t -A -F '|' {shlex.quote(conninfo)} -c {shlex.quote(sql)}")
        result = host.run(cmd)
        return result.rc, result.stdout.strip(), result.stderr.strip()
    return run
