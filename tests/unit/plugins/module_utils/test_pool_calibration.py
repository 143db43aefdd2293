# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The planner's PgBouncer pool for the lab host against the committed pool-size sweep
(docs/data/pool-sweep.json, written by tools/pool_sweep.py on the real PostgreSQL and PgBouncer):
under each workload the planned pool reaches 95 % of the best measured throughput with a p95 no worse
than 1.1 x the best measured p95 (issue 14; docs/benchmarks.md "Pool size sweep")."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
_SPEC = importlib.util.spec_from_file_location("capacity", ROOT / "plugins" / "module_utils" / "capacity.py")
capacity = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(capacity)

SWEEP = json.loads((ROOT / "docs" / "data" / "pool-sweep.json").read_text(encoding="utf-8"))
THROUGHPUT_SHARE = 0.95
P95_FACTOR = 1.1


def lab_pool():
    """default_pool_size of the lab plan (100 users, 3 replicas, 2 vCPU / 4 GB, every service)."""
    plan = capacity.stack_plan(100, replicas=3, vcpus=2, memory_mb=4096, services=list(capacity.OPTIONAL_SERVICES))
    return plan["pgbouncer"]["default_pool_size"]


def test_the_sweep_ran_on_the_lab_host_shape_and_covers_the_planned_pool():
    assert SWEEP["host"]["cpus"] == 2
    assert lab_pool() in {run["pool_size"] for run in SWEEP["runs"]}
    assert {run["pool_size"] for run in SWEEP["runs"]} >= {2, 5, 10, 20, 50}


@pytest.mark.parametrize("workload", ["k6", "pgbench"])
def test_the_planned_pool_is_within_the_criterion_of_the_best_measured(workload):
    runs = {run["pool_size"]: run[workload] for run in SWEEP["runs"]}
    assert all(result["errors"] == 0 for result in runs.values()), workload
    best = max(result["throughput"] for result in runs.values())
    best_p95 = min(result["p95_ms"] for result in runs.values())
    planned = runs[lab_pool()]
    assert planned["throughput"] >= THROUGHPUT_SHARE * best, (workload, lab_pool(), planned["throughput"], best)
    assert planned["p95_ms"] <= P95_FACTOR * best_p95, (workload, lab_pool(), planned["p95_ms"], best_p95)
