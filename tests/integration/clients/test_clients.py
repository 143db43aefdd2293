"""Mattermost's API as common clients use it, through Nginx on a deployed stack, with clients not
written here: PyPI `mattermostdriver` (REST and its websocket) and npm `@mattermost/client`
(Client4, the web app's own client). In the lab the server is the test double, so this proves the
double serves what real clients call, and that Nginx's websocket location carries a websocket.

MMOPS_CLIENTS_URL names the stack (http://127.0.0.1:<port>); the operations suite runs this against
its one-replica stack. Unlicensed replicas do not pass events to each other (no cluster), so the
websocket check needs the poster and the listener on one server: one replica."""
import asyncio
import json
import os
import queue
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
from mattermostdriver import Driver
from mattermostdriver.exceptions import NoAccessTokenProvided, NotEnoughPermissions

ROOT = Path(__file__).resolve().parents[3]
NODE_MODULES = ROOT / "tests/conformance/node_modules"
PASSWORD = "clients-Passw0rd!"


@pytest.fixture(scope="module")
def site():
    url = os.environ.get("MMOPS_CLIENTS_URL")
    assert url, "MMOPS_CLIENTS_URL is not set: run this through a suite that deploys a stack (tests/integration/operations)"
    return urllib.parse.urlsplit(url)


def driver(site, login_id=""):
    return Driver({"url": site.hostname, "port": site.port, "scheme": site.scheme, "basepath": "/api/v4",
                   "login_id": login_id, "password": PASSWORD, "timeout": 10, "verify": False})


@pytest.fixture(scope="module")
def world(site):
    """Two users on a new open team; alice is logged in with mattermostdriver."""
    tag = uuid.uuid4().hex[:8]
    names = {"alice": f"alice-{tag}", "bob": f"bob-{tag}", "carol": f"carol-{tag}"}
    anonymous = driver(site)
    users = {k: anonymous.users.create_user(options={"username": v, "email": f"{v}@example.test", "password": PASSWORD})
             for k, v in names.items()}
    alice = driver(site, names["alice"])
    alice.login()
    team = alice.teams.create_team(options={"name": f"clients-{tag}", "display_name": f"Clients {tag}", "type": "O"})
    alice.teams.add_user_to_team(team["id"], options={"team_id": team["id"], "user_id": users["bob"]["id"]})
    return {"tag": tag, "names": names, "users": users, "alice": alice, "team": team}


def test_mattermostdriver_rest(site, world):
    alice, team = world["alice"], world["team"]
    me = alice.users.get_user("me")
    assert me["id"] == world["users"]["alice"]["id"] and "password" not in me
    listed = {u["username"] for u in alice.users.get_users(params={"per_page": 200})}
    assert set(world["names"].values()) <= listed
    assert team["id"] in {t["id"] for t in alice.teams.get_user_teams("me")}
    public = {c["name"]: c for c in alice.channels.get_public_channels(team["id"])}
    assert {"town-square", "off-topic"} <= set(public)
    by_name = alice.channels.get_channel_by_name(team["id"], "town-square")
    assert by_name == alice.channels.get_channel(public["town-square"]["id"])
    post = alice.posts.create_post(options={"channel_id": by_name["id"], "message": f"hello {world['tag']}"})
    assert alice.posts.get_post(post["id"])["message"] == f"hello {world['tag']}"
    page = alice.posts.get_posts_for_channel(by_name["id"])
    assert page["order"][0] == post["id"] and page["posts"][post["id"]]["user_id"] == me["id"]

    carol = driver(site, world["names"]["carol"])  # not on the team: refused, not shown
    carol.login()
    with pytest.raises(NotEnoughPermissions):
        carol.channels.get_channel(by_name["id"])
    token = carol.client.token
    carol.logout()
    carol.client.token = token  # the old token: the server has ended that session
    with pytest.raises(NoAccessTokenProvided):  # mattermostdriver's name for 401
        carol.users.get_user("me")


def test_client4_rest(site, world):
    assert (NODE_MODULES / "@mattermost/client").is_dir(), "npm ci in tests/conformance first (tests/conformance/run)"
    out = subprocess.run(["node", str(Path(__file__).with_name("client4.cjs")), site.geturl(), world["names"]["bob"],
                          PASSWORD, world["team"]["id"]], capture_output=True, text=True, timeout=60, check=True,
                         env={**os.environ, "NODE_PATH": str(NODE_MODULES)})
    result = json.loads(out.stdout)
    assert "error" not in result, result["error"]
    bob = world["users"]["bob"]
    assert result["login"]["id"] == result["me"]["id"] == bob["id"]
    assert bob["id"] in {u["id"] for u in result["profiles"]}
    assert world["team"]["id"] in {t["id"] for t in result["teams"]}
    assert {"town-square", "off-topic"} <= {c["name"] for c in result["channels"]}
    assert result["byId"] == result["byName"] and result["byName"]["team_id"] == world["team"]["id"]
    assert result["got"]["message"] == "hello from Client4" == result["post"]["message"]
    assert result["post"]["id"] in result["posts"]["order"]
    assert result["logout"] == 200 and result["afterLogout"] == 401


def listen(site, login_id, events):
    """mattermostdriver's websocket in a thread of its own; every message goes to `events`."""
    client = driver(site, login_id)
    client.login()

    async def handler(message):
        events.put((time.monotonic(), json.loads(message)))

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        client.init_websocket(handler)

    threading.Thread(target=run, daemon=True).start()
    return client


def wait_for(events, predicate, timeout):
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            at, message = events.get(timeout=left)
        except queue.Empty:
            break
        if predicate(message):
            return at, message
    return None, None


def test_websocket_through_nginx_delivers_posted(site, world):
    alice, team = world["alice"], world["team"]
    channel = alice.channels.get_channel_by_name(team["id"], "town-square")
    bob_events, carol_events = queue.Queue(), queue.Queue()
    bob = listen(site, world["names"]["bob"], bob_events)
    carol = listen(site, world["names"]["carol"], carol_events)  # on no channel of the team
    try:
        _at, hello = wait_for(bob_events, lambda m: m.get("event") == "hello", 10)
        assert hello and hello["seq"] == 0 and hello["broadcast"]["user_id"] == world["users"]["bob"]["id"], hello
        _at, reply = wait_for(bob_events, lambda m: "seq_reply" in m, 5)
        assert reply == {"status": "OK", "seq_reply": 1}  # the answer to authentication_challenge
        assert wait_for(carol_events, lambda m: m.get("event") == "hello", 10)[1]

        sent_at = time.monotonic()
        post = alice.posts.create_post(options={"channel_id": channel["id"], "message": f"live {world['tag']}"})
        at, event = wait_for(bob_events, lambda m: m.get("event") == "posted", 2)
        assert event, "no posted event within 2 s of the post"
        assert json.loads(event["data"]["post"])["id"] == post["id"] and event["seq"] == 1
        assert event["broadcast"]["channel_id"] == channel["id"] and event["data"]["channel_name"] == "town-square"
        assert at - sent_at < 2
        assert wait_for(carol_events, lambda m: m.get("event") == "posted", 1) == (None, None), "posted to a non-member"
    finally:
        bob.disconnect()
        carol.disconnect()
