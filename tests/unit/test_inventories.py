"""The shipped inventories parse, and the production example's vault values decrypt."""
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _inventory(name, *extra):
    result = subprocess.run(
        ["ansible-inventory", "-i", f"inventories/{name}", "--list", "--export", *extra],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    return json.loads(result.stdout)


def test_lab_inventory_has_the_labs_topology():
    inventory = _inventory("lab")
    assert inventory["mattermost"]["hosts"] == ["lab"]
    group_vars = inventory["all"]["vars"]
    assert group_vars["stack_users"] == 100
    assert group_vars["stack_mattermost_replicas"] == 3


def test_production_example_decrypts_its_vault(tmp_path):
    password = tmp_path / "vault-password"
    password.write_text("example-only\n")
    result = subprocess.run(
        ["ansible", "-i", "inventories/example-production", "chat.example.com", "-m", "ansible.builtin.debug",
         "-a", "msg={{ postgres_mattermost_password }}", "--vault-password-file", str(password),
         "-e", "ansible_connection=local"],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "change-me-mattermost-0001" in result.stdout
