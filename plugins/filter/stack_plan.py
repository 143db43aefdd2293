# -*- coding: utf-8 -*-
# Copyright: (c) 2026, mattermost_ops.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters stack_plan and stack_plan_check: the capacity model of plugins/module_utils/capacity.py."""

from __future__ import annotations

import functools

from ansible.errors import AnsibleFilterError
from ansible_collections.mattermost_ops.stack.plugins.module_utils import capacity


def _filter(function):
    """FUNCTION with the model's PlanError raised as AnsibleFilterError (same message)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except capacity.PlanError as err:
            raise AnsibleFilterError(str(err)) from err
    return wrapper


class FilterModule:
    """Capacity planner filters."""

    def filters(self):
        return {"stack_plan": _filter(capacity.stack_plan), "stack_plan_check": _filter(capacity.stack_plan_check)}
