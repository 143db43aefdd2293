"""The preflight refuses secrets that are still published placeholders (the example inventory's
vault), by variable name and without printing them; real values pass."""
import json
import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAY = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.include_role:\n" \
       "        name: mattermost_ops.stack.stack\n        tasks_from: placeholders\n"
EXAMPLE_SECRETS = ["postgres_superuser_password", "postgres_mattermost_password", "monitoring_grafana_admin_password",
                   "monitoring_alertmanager_smtp_auth_password", "monitoring_alertmanager_mattermost_webhook_url"]


def _run(tmp_path, *extra):
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "vault-password").write_text("example-only\n")
    return subprocess.run(
        ["ansible-playbook", "-i", "inventories/example-production", str(tmp_path / "play.yml"),
         "--vault-password-file", str(tmp_path / "vault-password"), "-e", "ansible_connection=local", *extra],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})


def test_the_example_inventory_unchanged_is_refused_by_name(tmp_path):
    result = _run(tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    for name in EXAMPLE_SECRETS:
        assert name in out, out[-2000:]
    assert "change-me-" not in out and "/hooks/xxxx" not in out, "a secret value was printed"


def test_own_values_pass(tmp_path):
    own = {name: f"Own-secret-{n}-k3Jq9vT2" for n, name in enumerate(EXAMPLE_SECRETS)}
    own["monitoring_alertmanager_mattermost_webhook_url"] = "https://chat.acme.test/hooks/k3jq9vt2mz"
    result = _run(tmp_path, "-e", json.dumps(own))
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]


def test_every_no_log_option_of_the_roles_is_checked():
    no_log = {name for spec in ROOT.glob("roles/*/meta/argument_specs.yml")
              for entry in (yaml.safe_load(spec.read_text())["argument_specs"] or {}).values()
              for name, option in (entry.get("options") or {}).items() if option.get("no_log")}
    checked = set(yaml.safe_load((ROOT / "roles/stack/vars/main.yml").read_text())["_stack_secret_variables"])
    assert no_log == checked
