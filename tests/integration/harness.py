# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the integration suites (`import harness`): a suite without its deployment fails, it
never skips (a plain `pytest` with nothing deployed must not pass)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest


def require_deployment(expected_file, run_sh):
    """The JSON a suite's converge writes: fail (at collection) when it is missing."""
    path = Path(expected_file)
    if not path.exists():
        pytest.fail(f"{path} is missing: no deployed stack for this suite; run {run_sh}", pytrace=False)
    return path


def require_env(name, run_sh, split=False):
    """An environment variable the suite's run.sh exports: fail (at collection) when it is not set."""
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(f"{name} is not set: run {run_sh}, which exports it", pytrace=False)
    return shlex.split(value) if split else value


def wait_healthy(name, timeout=90):
    """Wait until Docker reports the container's health check healthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, timeout=30, check=False)
        state = json.loads(out.stdout)[0]["State"] if out.returncode == 0 else {}
        if state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(1)
    raise AssertionError(f"{name} is not healthy after {timeout} s")
