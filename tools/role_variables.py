#!/usr/bin/env python3
"""Render every role's variables from its meta/argument_specs.yml into README.md.

    python tools/role_variables.py          # rewrite the section between the markers
    python tools/role_variables.py --check  # exit 1 when README.md is stale

The argument specs are the one source: tests/unit/test_role_variables.py checks that every
default of every role is specified there and shown in the README.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- BEGIN ROLE VARIABLES -->", "<!-- END ROLE VARIABLES -->"


def _text(value) -> str:
    if isinstance(value, list):
        value = " ".join(value)
    return " ".join(str(value).split()).replace("|", "\\|")


def _default(spec: dict) -> str:
    if "default" not in spec:
        return "*(required)*" if spec.get("required") else "*(computed)*"
    return f"`{yaml.safe_dump(spec['default'], default_flow_style=True, width=1000).strip().removesuffix('...').strip()}`"


def render() -> str:
    parts = []
    for specs_file in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        role = specs_file.parent.parent.name
        main = yaml.safe_load(specs_file.read_text())["argument_specs"]["main"]
        parts.append(f"### `mattermost_ops.stack.{role}`\n\n{_text(main.get('short_description', ''))}\n")
        parts.append("| Variable | Type | Default | Description |\n|---|---|---|---|")
        for name, spec in main.get("options", {}).items():
            kind = spec.get("type", "str") + (f" of {spec['elements']}" if "elements" in spec else "")
            choices = f" One of: {', '.join(map(str, spec['choices']))}." if "choices" in spec else ""
            parts.append(f"| `{name}` | {kind} | {_default(spec)} | {_text(spec.get('description', ''))}{choices} |")
        parts.append("")
    return "\n".join(parts)


def main() -> int:
    text = README.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render()}{END}{tail}"
    if "--check" in sys.argv:
        if new != text:
            print("README.md role variables are stale: run python tools/role_variables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
