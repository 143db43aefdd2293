# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter plugin: the capacity model's functions, with its errors as AnsibleFilterError."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.mattermost_ops.stack.plugins.filter.stack_plan import FilterModule
from ansible_collections.mattermost_ops.stack.plugins.module_utils import capacity

FILTERS = FilterModule().filters()


def test_filters_return_what_the_model_returns():
    assert set(FILTERS) == {"stack_plan", "stack_plan_check"}
    assert FILTERS["stack_plan"](100, replicas=3) == capacity.stack_plan(100, replicas=3)
    assert FILTERS["stack_plan_check"]({"mattermost": {"MaxIdleConns": 11, "MaxOpenConns": 10}}) == [
        {"rule": "idle_le_open", "message": "MaxIdleConns 11 > MaxOpenConns 10"}]


@pytest.mark.parametrize("name, args, kwargs, message", [
    ("stack_plan", (0,), {}, "users=0"),
    ("stack_plan", (1000,), {"vcpus": 2}, "[server_steady]"),
    ("stack_plan", (100,), {"overrides": {"pgbouncer": {"max_client_conn": 5}}}, "[client_conn_capacity]"),
    ("stack_plan_check", ("text",), {}, "must be a dict"),
])
def test_model_errors_become_filter_errors_with_the_same_message(name, args, kwargs, message):
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS[name](*args, **kwargs)
    assert message in str(err.value)
    assert isinstance(err.value.__cause__, capacity.PlanError)
