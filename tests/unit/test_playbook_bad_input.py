"""Bad input to the main command fails at once, naming the problem, before anything changes."""
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, env=None, timeout=120):
    started = time.monotonic()
    result = subprocess.run(
        ["ansible-playbook", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **(env or {})},
        check=False,
    )
    return result, time.monotonic() - started


def test_unreachable_host_fails_at_once():
    # 127.0.0.9 is loopback with nothing listening on 22: the connection is refused at once.
    result, seconds = _run("site.yml", "-i", "inventories/lab", env={"MMOPS_LAB_HOST": "127.0.0.9"})
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "UNREACHABLE" in out and "127.0.0.9" in out, out[-2000:]
    assert seconds < 60


def test_unsupported_os_is_refused_by_name(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n"
        "  connection: local\n"
        "  gather_facts: true\n"
        "  tasks:\n"
        "    - name: Pretend to be another distribution\n"
        "      ansible.builtin.set_fact:\n"
        "        ansible_facts: \"{{ ansible_facts | combine({'distribution': 'CentOS',\n"
        "          'distribution_version': '9', 'distribution_major_version': '9'}) }}\"\n"
        "    - name: Run the role every other role depends on\n"
        "      ansible.builtin.include_role:\n"
        "        name: mattermost_ops.stack.stack\n"
    )
    result, _seconds = _run(str(playbook), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "CentOS 9 is not supported" in out, out[-2000:]
    assert "Debian 12" in out


def test_host_too_small_names_the_memory_the_plan_needs():
    result, _seconds = _run("site.yml", "-i", "inventories/lab", "-e", "stack_host_memory_mb=1024",
                            "-e", "stack_host_vcpus=2", "--check")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "memory_mb" in out and "1024" in out, out[-2000:]
    assert "Install Docker Engine" not in out  # stopped before the first change


def test_site_validates_every_role_first_and_forces_handlers():
    """Every role's input checks run in the pre_tasks (before the first change), and handlers run even
    when a later task fails (no written-but-unapplied change)."""
    (play,) = yaml.safe_load((ROOT / "playbooks/site.yml").read_text())
    (validate,) = [t for t in play["pre_tasks"] if t.get("ansible.builtin.include_role", {}).get("tasks_from") == "validate"]
    assert sorted(validate["loop"]) == sorted(p.parts[-3] for p in ROOT.glob("roles/*/tasks/validate.yml"))
    assert play["force_handlers"] is True
