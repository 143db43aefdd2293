"""Every default of every role is specified in its argument_specs and shown in the README."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/defaults/main.yml"))


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_are_in_argument_specs(role):
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text()) or {}
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    missing = sorted(set(defaults) - set(specs))
    assert not missing, f"{role.name}: defaults without an argument spec: {missing}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_are_prefixed_and_in_the_readme(role):
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text()) or {}
    readme = (ROOT / "README.md").read_text()
    for name in defaults:
        assert name.startswith(f"{role.name}_"), f"{name} lacks the role prefix {role.name}_"
        assert f"`{name}`" in readme, f"{name} is not documented in README.md"


def test_readme_variables_section_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "tools/role_variables.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
