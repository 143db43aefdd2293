"""No role reads another role's variables: what two roles share is the contract the `stack` role
publishes (its `stack_*` variables and facts), so a role can be changed, renamed or replaced without
looking into the others (docs/architecture.md).

A variable belongs to the role whose defaults, vars or argument specs define it. Every Jinja
expression of every role (templates, tasks, handlers, defaults, vars, argument-spec defaults) is
searched for names that belong to another role; string literals (a secret's name, a setting's name)
and attributes (`stack_secrets.postgres_mattermost_password`) are not variables and do not count."""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta").is_dir())
JINJA = re.compile(r"{{(.*?)}}|{%(.*?)%}", re.S)
BARE = {"when", "that", "until", "changed_when", "failed_when"}  # keys whose values are expressions
STRINGS = re.compile(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"")
NAME = re.compile(r"(?<![\w.$])[a-z_][a-z0-9_]*")


def _load(path):
    return yaml.safe_load(path.read_text()) or {}


def owned_variables():
    owner = {}
    for role in ROLES:
        base = ROOT / "roles" / role
        names = set()
        for rel in ("defaults/main.yml", "vars/main.yml"):
            if (base / rel).is_file():
                names |= set(_load(base / rel))
        specs = _load(base / "meta/argument_specs.yml").get("argument_specs", {}) if (base / "meta/argument_specs.yml").is_file() else {}
        for entry in specs.values():
            names |= set((entry or {}).get("options", {}))
        for name in names:
            owner.setdefault(name, role)
    return owner


def _expressions(node, key=None):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _expressions(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item, key)
    elif isinstance(node, str):
        if key in BARE:
            yield node
        for match in JINJA.finditer(node):
            yield match.group(1) or match.group(2) or ""


def expressions_of(role):
    base = ROOT / "roles" / role
    for path in sorted(base.rglob("*")):
        if path.suffix in (".yml", ".yaml") and "files" not in path.parts:
            for expr in _expressions(yaml.safe_load(path.read_text())):
                yield path, expr
        elif path.suffix == ".j2":
            text = re.sub(r"{#.*?#}", "", path.read_text(), flags=re.S)
            for match in JINJA.finditer(text):
                yield path, match.group(1) or match.group(2) or ""


@pytest.mark.parametrize("role", [r for r in ROLES if r != "stack"])
def test_role_reads_no_other_roles_variables(role):
    owner = owned_variables()
    foreign = set()
    for path, expr in expressions_of(role):
        for name in NAME.findall(STRINGS.sub("''", expr)):
            if owner.get(name, role) not in (role, "stack"):
                foreign.add(f"{path.relative_to(ROOT)}: {name} (role {owner[name]})")
    assert not foreign, "use the stack role's contract instead:\n" + "\n".join(sorted(foreign))


def test_stack_reads_no_service_roles_variables():
    owner = owned_variables()
    foreign = {f"{p.relative_to(ROOT)}: {n}" for p, e in expressions_of("stack")
               for n in NAME.findall(STRINGS.sub("''", e)) if owner.get(n, "stack") != "stack"}
    assert not foreign, sorted(foreign)


def test_the_check_sees_a_foreign_variable():
    owner = owned_variables()
    assert owner["nginx_http_port"] == "nginx" and owner["stack_network"] == "stack"
    expr = STRINGS.sub("''", " nginx_http_port | default(80) + stack_secrets.postgres_x + 'pgbouncer_port' ")
    assert [n for n in NAME.findall(expr) if n in owner] == ["nginx_http_port"]
