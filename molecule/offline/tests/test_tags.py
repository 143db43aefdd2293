"""The site playbook's tags work on their own against the converged instance, as an operator runs
them (`--tags nginx` after editing an Nginx setting): the plan and the host checks run with any tag,
and a converged host reports no change."""
import os
import re
import subprocess
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[1]
CONVERGE = SCENARIO.parent / "shared/converge.yml"


@pytest.mark.parametrize("tag", ["nginx", "monitoring"])
def test_a_tag_alone_on_a_converged_host_changes_nothing(tag):
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), str(CONVERGE), "--tags", tag],
                            capture_output=True, text=True, timeout=900, check=False)
    recap = result.stdout[result.stdout.rfind("PLAY RECAP"):]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\bok=[1-9]", recap) and re.search(r"\bchanged=0\b", recap) and "failed=0" in recap, recap
    assert f"mattermost_ops.stack.{tag} :" in result.stdout, f"no task of the {tag} role ran"
