"""Every image the roles use is pinned to an exact tag, and export_images.yml lists them all."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from image_defaults import role_images  # noqa: E402  pylint: disable=wrong-import-position


def test_images_are_pinned_and_not_doubles():
    images = role_images()
    assert images
    for name, ref in images.items():
        tag = ref.rsplit(":", 1)[-1] if ":" in ref.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}={ref} is not pinned to a version"
        assert "double" not in ref and "mattermost-ops-lab" not in ref, f"{name} points at a lab image"


def test_export_playbook_lists_every_image():
    result = subprocess.run(
        ["ansible-playbook", "playbooks/export_images.yml", "-e", "export_images_list_only=true"],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    for ref in role_images().values():
        assert f"- {ref}" in result.stdout, ref
