#!/usr/bin/env python3
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mutation run over stack_plan_check's rule code with cosmic-ray (docs/capacity-model.md, "Mutation run").

Mutates plugins/module_utils/capacity.py in copies under .mutation/ (never the checkout), runs the test functions
of tests/unit/plugins/module_utils/test_capacity_rules.py against each mutant of the rule code (SCOPE) with one
cosmic-ray worker per core, prints killed/survived per function and exits 1 when a mutant in SCOPE survives
(2 when the set-up fails). --all also runs the planner's mutants: reported, never a failure.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = "plugins/module_utils/capacity.py"
TESTS = "tests/unit/plugins/module_utils/test_capacity_rules.py"
WORK = ROOT / ".mutation"
# Everything stack_plan_check depends on; RULES is reported rule by rule.
SCOPE = ("stack_plan_check", "_context", "_num", "_gomemlimit_mib", "GO_UNITS_MIB", "_pool_mode", "_number", "_fail",
         "_find", "postgres_need_mb", "_unlimited", "RULES", "CHECK_VALUES", "ADDENDS", "PG_DEFAULTS")
# Mutants that behave exactly like the code, not run: (scope, code, the mutant's code, why).
EQUIVALENT = (
    ("_context", 'low == "positive"', 'low is "positive"',
     "both operands are the module's own interned constant 'positive' (CHECK_VALUES)"),
    ("_context", 'c["autovac"] == -1', 'c["autovac"] is -1',
     "_number returns int(x) for an integral x and CPython caches small ints: `is -1` is `== -1`"),
    ("_context", '== "session"', '<= "session"', "_pool_mode returns 'session' or 'transaction' only"),
    ("RULES unbounded_wait", 'c["qwt"] == 0', 'c["qwt"] <= 0', "query_wait_timeout is read with minimum 0"),
    ("RULES reserve_before_wait", 'c["qwt"] > 0', 'c["qwt"] != 0', "query_wait_timeout is read with minimum 0"),
    ("RULES server_idle_le_lifetime", 'c["slt"] > 0', 'c["slt"] != 0', "server_lifetime is read with minimum 0"),
    ("RULES server_idle_le_lifetime", 'c["sit"] == 0', 'c["sit"] <= 0', "server_idle_timeout is read with minimum 0"),
)


def scopes(source):
    """[(first line, last line, name)] of the module's top-level statements; RULES entries as 'RULES <id>'."""
    spans = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            spans.append((node.lineno, node.end_lineno, node.name))
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "RULES":
                spans += [(rule.lineno, rule.end_lineno, f"RULES {rule.elts[0].value}") for rule in node.value.elts]
            spans.append((node.lineno, node.end_lineno, name))
    return spans


def where(spans, line):
    name = next((name for first, last, name in spans if first <= line <= last), "module")
    return "constants" if name.isupper() and not in_scope(name) else name


def in_scope(name):
    return name.split(" ")[0] in SCOPE


def run_tests(path):
    """Call the test_* functions of the file at PATH in file order; 1 at the first failure (the mutant is killed).

    The test command of each mutant: no pytest start-up, so a mutant costs a fraction of a second."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        tests = [test for name, test in vars(module).items() if name.startswith("test_") and callable(test)]
        for test in tests:
            test()
    except Exception:  # pylint: disable=broad-except  # any error kills the mutant, as in pytest
        traceback.print_exc(file=sys.stdout)  # cosmic-ray keeps stdout: why the mutant died
        return 1
    print(f"{len(tests)} passed")
    return 0 if tests else 1


def equivalence(source, name, mutation):
    """The EQUIVALENT entry that MUTATION is, else None."""
    import cosmic_ray.plugins  # pylint: disable=import-outside-toplevel
    from cosmic_ray.mutating import mutate_code  # pylint: disable=import-outside-toplevel

    def squeeze(text):
        return "".join(text.split())
    line = squeeze(source.splitlines()[mutation.start_pos[0] - 1])
    for scope, code, mutant, reason in EQUIVALENT:
        if scope == name and squeeze(code) in line:
            operator = cosmic_ray.plugins.get_operator(mutation.operator_name)(**mutation.operator_args)
            mutated = mutate_code(source, operator, mutation.occurrence).splitlines()[mutation.start_pos[0] - 1]
            if squeeze(mutated) == line.replace(squeeze(code), squeeze(mutant), 1):
                return scope, code, mutant, reason
    return None


def skip(db, job_ids, why):
    from cosmic_ray.work_item import WorkerOutcome, WorkResult  # pylint: disable=import-outside-toplevel

    if job_ids:
        db.set_multiple_results(job_ids, WorkResult(output=why, worker_outcome=WorkerOutcome.SKIPPED))


def main():
    if sys.argv[1:2] == ["--run-tests"]:
        return run_tests(sys.argv[2])
    from cosmic_ray.work_db import WorkDB, use_db  # pylint: disable=import-outside-toplevel
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers (default: one per core)")
    parser.add_argument("--all", action="store_true", help="also run the mutants outside the rule code")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only the mutants of this function or table ('RULES memory_fit'); repeatable")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per test run (default 20)")
    args = parser.parse_args()
    started = time.monotonic()
    bin_dir = Path(sys.executable).parent
    cosmic_ray = str(bin_dir / "cosmic-ray")

    shutil.rmtree(WORK, ignore_errors=True)
    workers = [WORK / f"w{i}" for i in range(max(1, args.jobs))]
    for worker in workers:
        for path in (MODULE, TESTS):
            (worker / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, worker / path)
    test_command = f"{sys.executable} {Path(__file__).resolve()} --run-tests {TESTS}"
    config = WORK / "config.toml"
    config.write_text(f'[cosmic-ray]\nmodule-path = "{MODULE}"\ntimeout = {args.timeout}\nexcluded-modules = []\n'
                      f'test-command = "{test_command}"\n\n[cosmic-ray.distributor]\nname = "local"\n')
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

    baseline = subprocess.run(test_command.split(), cwd=workers[0], env=env, capture_output=True, text=True,
                              check=False)
    if baseline.returncode != 0:
        print(baseline.stdout + baseline.stderr + "\nmutation: the tests fail without a mutant", file=sys.stderr)
        return 2
    session = "session.sqlite"
    subprocess.run([cosmic_ray, "init", str(config), session], cwd=workers[0], env=env, check=True)

    source = (workers[0] / MODULE).read_text(encoding="utf-8")
    spans = scopes(source)
    names, why, matched = {}, {}, Counter()
    with use_db(str(workers[0] / session), WorkDB.Mode.open) as db:
        items = sorted(db.work_items, key=lambda item: (item.mutations[0].start_pos, item.mutations[0].operator_name))
        for item in items:
            name = names[item.job_id] = where(spans, item.mutations[0].start_pos[0])
            if not in_scope(name):
                if not args.all:
                    why[item.job_id] = "out of scope"
            elif args.only and not name.startswith(tuple(args.only)):
                why[item.job_id] = "not chosen"
            elif entry := equivalence(source, name, item.mutations[0]):
                why[item.job_id] = "equivalent"
                matched[entry] += 1
        for reason in set(why.values()):
            skip(db, [job_id for job_id, w in why.items() if w == reason], reason)
    pending = [item.job_id for item in items if item.job_id not in why]
    for worker in workers[1:]:
        shutil.copy2(workers[0] / session, worker / session)
    for k, worker in enumerate(workers):
        with use_db(str(worker / session), WorkDB.Mode.open) as db:
            skip(db, [job_id for i, job_id in enumerate(pending) if i % len(workers) != k], "another worker")
    print(f"mutation: {len(pending)} mutants to run on {len(workers)} worker(s)", flush=True)
    procs = [subprocess.Popen([cosmic_ray, "exec", str(config), session], cwd=w, env=env) for w in workers]
    if any(proc.wait() != 0 for proc in procs):
        print("mutation: cosmic-ray exec failed", file=sys.stderr)
        return 2

    results = {}
    for worker in workers:
        with use_db(str(worker / session), WorkDB.Mode.open) as db:
            for item, result in db.completed_work_items:
                if result.output != "another worker":
                    results[item.job_id] = (item, result)
    counts, survivors, errors = defaultdict(Counter), [], []
    for job_id, (item, result) in results.items():
        name = names[job_id]
        if result.worker_outcome == WorkerOutcome.SKIPPED:
            outcome = "equivalent" if result.output == "equivalent" else "not run"
        elif result.worker_outcome != WorkerOutcome.NORMAL or result.test_outcome == TestOutcome.INCOMPETENT:
            outcome = "error"
            errors.append((name, item, result))
        elif result.test_outcome == TestOutcome.SURVIVED:
            outcome = "survived"
            survivors.append((name, item, result))
        else:
            outcome = "killed"
        counts[name][outcome] += 1

    order = {name: i for i, (_first, _last, name) in enumerate(sorted(spans))}
    print(f"{'':<36} {'killed':>7} {'survived':>9} {'equivalent':>11} {'not run':>8} {'error':>6}")
    for part, label in ((True, "rule code"), (False, "outside the rule code (planner)")):
        rows = sorted((n for n in counts if in_scope(n) == part), key=lambda n: order.get(n, -1))
        total = sum((counts[n] for n in rows), Counter())
        for name in (rows if part or args.all else []) + ["= " + label]:
            c = counts.get(name, total)
            print(f"{name:<36} {c['killed']:>7} {c['survived']:>9} {c['equivalent']:>11} {c['not run']:>8} "
                  f"{c['error']:>6}")
    for (scope, code, mutant, reason), count in matched.items():
        print(f"equivalent in {scope}: {code} -> {mutant} ({count}): {reason}")
    for name, item, result in survivors + errors:
        mutation = item.mutations[0]
        kind = "SURVIVED" if (name, item, result) in survivors else "ERROR"
        print(f"\n{kind} in {name}: {mutation.operator_name} at line {mutation.start_pos[0]}"
              f"{'' if in_scope(name) else ' (outside the rule code)'}\n{result.diff or result.output}")
    bad = [s for s in survivors + errors if in_scope(s[0])]
    in_scope_counts = sum((counts[n] for n in counts if in_scope(n)), Counter())
    print(f"\nmutation: rule code {sum(in_scope_counts.values())} mutants: {in_scope_counts['killed']} killed, "
          f"{in_scope_counts['survived']} survived, {in_scope_counts['equivalent']} equivalent, "
          f"{in_scope_counts['not run']} not run, {in_scope_counts['error']} errors; "
          f"{time.monotonic() - started:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
