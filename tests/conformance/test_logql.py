"""Every LogQL expression the collection ships parses with Grafana's own LogQL grammar (npm
@grafana/lezer-logql, pinned in package.json): the Loki queries of the dashboards and the stream
selectors in the Alloy pipeline. A typo there would only show as an empty panel or a stage that
never matches."""
import json
import re
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MONITORING = ROOT / "roles/monitoring"


def dashboard_queries():
    for path in sorted((MONITORING / "files/dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                if source.get("type") == "loki":
                    yield f"{path.name} panel {panel['id']}", target["expr"]


def alloy_selectors():
    text = (MONITORING / "templates/config.alloy.j2").read_text()
    for n, raw in enumerate(re.findall(r'selector\s*=\s*"((?:\\.|[^"\\])*)"', text)):
        yield f"config.alloy.j2 selector {n + 1}", json.loads(f'"{raw}"')


EXPRESSIONS = dict([*dashboard_queries(), *alloy_selectors()])


def parse(expressions):
    out = subprocess.run(["node", str(HERE / "logql.cjs")], input=json.dumps(expressions), capture_output=True,
                         text=True, check=True, cwd=HERE, timeout=60)
    return json.loads(out.stdout)


def test_the_grammar_refuses_a_broken_query():
    assert parse(['sum(count_over_time({job="mattermost"}[5m]))', 'count_over_time({job="x"} |~ "a" [5m',
                  '{job="mattermost", level=~"error"']) == [None, 36, 33]


def test_there_are_queries_to_check():
    assert sum(name.startswith("mmops-logs") for name in EXPRESSIONS) >= 4
    assert any(name.startswith("config.alloy") for name in EXPRESSIONS)


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_expression_parses(name):
    (error,) = parse([EXPRESSIONS[name]])
    assert error is None, f"{name}: LogQL error at offset {error}: {EXPRESSIONS[name]!r}"
