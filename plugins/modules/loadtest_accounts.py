#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, mattermost_ops.stack contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Seed the accounts of a Mattermost load test through the REST API (see DOCUMENTATION)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: loadtest_accounts
short_description: Seed the accounts a Mattermost load test logs in with
description:
  - Through Mattermost's REST API, from the control node - an admin account, an open team, O(channels) channels
    C(loadtest-1) ... and one account per name in O(users), each a member of the team and so of its default channels.
  - Existing accounts are reused. What was seeded is remembered in O(state_file) (ids, no passwords), so a later run
    against the same team creates and logs in no user again.
  - Each user's password derives from O(secret) and the user name (C(Lt-) + 24 hex digits of SHA-256 + C(-9)); no
    password is in the result.
  - Accounts are created by O(workers) threads at once (each costs the server a bcrypt hash).
author: mattermost_ops maintainers (@mattermost-ops)
options:
  url:
    description: The address users open (Nginx in front of Mattermost), C(http(s)://host[:port][/path]).
    type: str
    required: true
  validate_certs:
    description: Check the server's TLS certificate.
    type: bool
    default: true
  admin_username:
    description: Account that creates the team, the channels and the users (created when missing).
    type: str
    required: true
  admin_password:
    description: Its password. Derived from O(secret) as the users' passwords are, when empty.
    type: str
    default: ""
  email_domain:
    description: Domain of the accounts' e-mail addresses.
    type: str
    default: example.com
  team_name:
    description: Team of the load test (created when missing).
    type: str
    required: true
  channels:
    description: Number of channels C(loadtest-N) in the team besides its default ones.
    type: int
    default: 2
  users:
    description: User names to seed, one per virtual user.
    type: list
    elements: str
    required: true
  secret:
    description: Secret the users' passwords derive from.
    type: str
    required: true
  state_file:
    description: JSON file (mode 0600) with the ids seeded on this site before.
    type: path
    required: true
  accounts_file:
    description:
      - When given, the accounts for k6 are written there (mode 0600), the one place their passwords are written down.
      - "JSON with C(team_id), C(channel_ids) and C(users), a list of C(username), C(id) and C(password)."
    type: path
  workers:
    description: Accounts created at once.
    type: int
    default: 8
  timeout:
    description: Seconds each API call may take.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Seed an admin, a team, two channels and three users
  mattermost_ops.stack.loadtest_accounts:
    url: http://127.0.0.1:18090
    admin_username: loadtest-admin
    admin_password: "{{ admin_password }}"
    team_name: loadtest
    users: [loadtest-0001, loadtest-0002, loadtest-0003]
    secret: "{{ loadtest_secret }}"
    state_file: ~/.cache/mattermost-ops/loadtest/accounts.json
    accounts_file: /tmp/k6-accounts.json
  no_log: true
"""

RETURN = r"""
team_id:
  description: Id of the team.
  returned: success
  type: str
channel_ids:
  description: Ids of the team's default channels and of the load-test channels.
  returned: success
  type: list
  elements: str
users:
  description: Id of every user in O(users), by name.
  returned: success
  type: dict
created:
  description: Accounts created by this run.
  returned: success
  type: int
reused:
  description: Accounts that existed already (from O(state_file), or looked up by logging in once).
  returned: success
  type: int
"""

import hashlib
import json
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

CHANNEL_NAMES = re.compile(r"^(town-square|off-topic|loadtest-[0-9]+)$")


def user_password(secret, name):
    return "Lt-" + hashlib.sha256((secret + name).encode()).hexdigest()[:24] + "-9"


class SeedError(Exception):
    pass


class Api:
    def __init__(self, params):
        self.base = params["url"].rstrip("/") + "/api/v4"
        self.validate_certs, self.timeout, self.token = params["validate_certs"], params["timeout"], ""

    def call(self, method, path, body=None, ok=(200, 201), retries=2):
        """(status, JSON body, headers); a status outside `ok` and 400/401 is retried, then raised."""
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        for attempt in range(retries + 1):
            try:
                resp = open_url(self.base + path, method=method, headers=headers, timeout=self.timeout,
                                data=None if body is None else json.dumps(body), validate_certs=self.validate_certs)
                return resp.status, json.loads(resp.read() or b"null"), resp.headers
            except HTTPError as err:
                status, raw, headers_in = err.code, err.read(), err.headers
            except URLError as err:
                status, raw, headers_in = -1, str(err.reason).encode(), {}
            if status in ok or status in (400, 401) or attempt == retries:
                try:
                    return status, json.loads(raw or b"null"), headers_in
                except ValueError:
                    return status, {"message": raw.decode(errors="replace")[:300]}, headers_in
            time.sleep(1)
        raise AssertionError("unreachable")

    def need(self, method, path, body=None, ok=(200, 201)):
        status, data, _headers = self.call(method, path, body, ok)
        if status not in ok:
            message = data.get("message", "") if isinstance(data, dict) else ""
            raise SeedError(f"{method} {path}: HTTP {status} {message}".strip())
        return data


def read_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def write_private(path, state):
    """Write JSON atomically, readable by the owner only (mode 0600)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".accounts-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(state, out, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def seed(params):
    api, p = Api(params), params
    changed = False
    admin_password = p["admin_password"] or user_password(p["secret"], p["admin_username"])
    admin = {"username": p["admin_username"], "password": admin_password,
             "email": f"{p['admin_username']}@{p['email_domain']}"}
    status, _data, _headers = api.call("POST", "/users", admin, ok=(201,))
    changed |= status == 201
    login = {"login_id": p["admin_username"], "password": admin_password}
    status, _data, headers = api.call("POST", "/users/login", login)
    if status not in (200, 201) or not headers.get("Token"):
        hint = (": the account exists with another password. Give it as loadtest_admin_password, or use the "
                "loadtest_state_dir (its secret) of the run that created it") if status == 401 else ""
        raise SeedError(f"{p['admin_username']} could not log in (HTTP {status}){hint}")
    api.token = headers["Token"]

    team = next((t for t in api.need("GET", "/users/me/teams") if t["name"] == p["team_name"]), None)
    if team is None:
        team = api.need("POST", "/teams", {"name": p["team_name"], "display_name": "Load test", "type": "O"})
        changed = True
    found = api.need("GET", f"/users/me/teams/{team['id']}/channels")
    wanted = [f"loadtest-{n}" for n in range(1, p["channels"] + 1)]
    for name in sorted(set(wanted) - {c["name"] for c in found}):
        found.append(api.need("POST", "/channels", {"team_id": team["id"], "name": name, "type": "O",
                                                    "display_name": f"Load test {name}"}))
        changed = True

    state = read_state(p["state_file"])
    known = state.get("users", {}) if state.get("team_id") == team["id"] else {}
    missing = [u for u in p["users"] if u not in known]

    def add(name):
        body = {"username": name, "email": f"{name}@{p['email_domain']}", "password": user_password(p["secret"], name)}
        status, data, _headers = api.call("POST", "/users", body, ok=(201,))
        if status == 400:  # exists: log in once for its id
            data = api.need("POST", "/users/login", {"login_id": name, "password": body["password"]})
        elif status != 201:
            raise SeedError(f"creating {name}: HTTP {status} {(data or {}).get('message', '')}")
        api.need("POST", f"/teams/{team['id']}/members", {"team_id": team["id"], "user_id": data["id"]})
        return name, data["id"], status == 201

    with ThreadPoolExecutor(max_workers=max(1, p["workers"])) as pool:
        results = list(pool.map(add, missing))
    created = sum(1 for _name, _id, new in results if new)
    ids = {**known, **{name: user_id for name, user_id, _new in results}}
    if results or state.get("team_id") != team["id"]:
        write_private(p["state_file"], {"base_url": p["url"], "team_id": team["id"], "users": ids})
    result = {"changed": changed or created > 0, "team_id": team["id"], "created": created,
              "reused": len(p["users"]) - created,
              "channel_ids": [c["id"] for c in found if CHANNEL_NAMES.match(c["name"])],
              "users": {name: ids[name] for name in p["users"]}}
    if p["accounts_file"]:
        write_private(p["accounts_file"], {
            "team_id": team["id"], "channel_ids": result["channel_ids"],
            "users": [{"username": name, "id": ids[name], "password": user_password(p["secret"], name)}
                      for name in p["users"]]})
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "validate_certs": {"type": "bool", "default": True},
            "admin_username": {"type": "str", "required": True},
            "admin_password": {"type": "str", "default": "", "no_log": True},
            "email_domain": {"type": "str", "default": "example.com"},
            "team_name": {"type": "str", "required": True},
            "channels": {"type": "int", "default": 2},
            "users": {"type": "list", "elements": "str", "required": True},
            "secret": {"type": "str", "required": True, "no_log": True},
            "state_file": {"type": "path", "required": True},
            "accounts_file": {"type": "path"},
            "workers": {"type": "int", "default": 8},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=False,
    )
    try:
        module.exit_json(**seed(module.params))
    except SeedError as err:
        module.fail_json(msg=f"{err}. No load was sent.")


if __name__ == "__main__":
    main()
