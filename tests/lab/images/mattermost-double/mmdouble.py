#!/opt/mmdouble/bin/python3
"""Mattermost TEST DOUBLE for the offline lab, where no Mattermost image can be had. NOT Mattermost: see README.md.

Same port, MM_* variables, volumes and uid as the real image; the API calls the lab's load tests and seeding use."""
import base64
import itertools
import json
import os
import random
import re
import signal
import socketserver
import sys
import threading
import time
import traceback
import urllib.parse
from pathlib import Path
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import bcrypt
import psycopg2
import psycopg2.errors
import psycopg2.extras
import psycopg2.pool

sys.path.insert(0, "/opt/mmdouble")
import websocket_hub  # noqa: E402  pylint: disable=wrong-import-position

VERSION, SCHEMA_FILE = "double-0.1", Path("/opt/mmdouble/schema.sql")  # CREATE ... IF NOT EXISTS
LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}
B32 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "ybndrfg8ejkmcpqxot1uwisza345h769")  # Mattermost's alphabet
FORBIDDEN = (403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
EXPIRED = (401, "api.context.session_expired.app_error", "Invalid or expired session, please login again.")


# Fault injection for tests, at run time: SIGUSR1 makes every API call but the ping fail with
# MMDOUBLE_FAIL_STATUS (default 500), SIGUSR2 goes back to MMDOUBLE_FAIL_RATE (`docker kill -s USR1`).
INJECTED_FAULT = {}


def env(name, default=""):
    return os.environ.get(name, str(default)).strip()


def env_int(name, default):
    return int(env(name) or default)


def new_id():
    """26 lower-case base32 characters, like model.NewId."""
    return base64.b32encode(os.urandom(16)).decode().rstrip("=").translate(B32)


def now_ms():
    return int(time.time() * 1000)


class Log:
    """Mattermost-style JSON lines into <LogSettings.FileLocation (a directory)>/mattermost.log and to stdout."""

    def __init__(self):
        self.lock, self.file = threading.Lock(), None
        self.console, self.console_json, self.file_json, enable_file = (
            env(f"MM_LOGSETTINGS_{k}", "true").lower() == "true" for k in ("ENABLECONSOLE", "CONSOLEJSON", "FILEJSON", "ENABLEFILE"))
        self.console_level, self.file_level = (LEVELS.get(env(f"MM_LOGSETTINGS_{k}LEVEL", "info").lower(), 20) for k in ("CONSOLE", "FILE"))
        if enable_file:
            os.makedirs(env("MM_LOGSETTINGS_FILELOCATION") or "/mattermost/logs", exist_ok=True)
            self.file = open(os.path.join(env("MM_LOGSETTINGS_FILELOCATION") or "/mattermost/logs", "mattermost.log"), "a",
                             buffering=1, encoding="utf-8")

    def __call__(self, level, msg, **fields):
        stamp = time.time()
        rec = {"timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp)) + ".%03d Z" % (stamp % 1 * 1000),
               "level": level, "msg": msg, "caller": "mmdouble.py:%d" % sys._getframe(1).f_lineno, "double": True, **fields}
        line, plain = json.dumps(rec, default=str), f"{rec['timestamp']} {level} {msg} {fields}"
        with self.lock:
            if self.file and LEVELS[level] >= self.file_level:
                self.file.write((line if self.file_json else plain) + "\n")
            if self.console and LEVELS[level] >= self.console_level:
                print(line if self.console_json else plain, flush=True)


class ApiError(Exception):
    def __init__(self, status, err_id, message):
        super().__init__(message)
        self.status, self.err_id, self.message = status, err_id, message


class Database:
    """psycopg2's ThreadedConnectionPool capped at MaxOpenConns: callers wait for a free slot instead of failing."""

    def __init__(self):
        if env("MM_SQLSETTINGS_DRIVERNAME", "postgres") != "postgres":
            raise SystemExit("the double supports MM_SQLSETTINGS_DRIVERNAME=postgres only")
        url = urllib.parse.urlsplit(env("MM_SQLSETTINGS_DATASOURCE"))
        query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        self.binary_parameters = dict(query).get("binary_parameters", "")  # a lib/pq option that libpq rejects
        self.dsn = url._replace(query=urllib.parse.urlencode([kv for kv in query if kv[0] != "binary_parameters"])).geturl()
        self.max_open = max(1, env_int("MM_SQLSETTINGS_MAXOPENCONNS", 100))
        self.max_idle = max(0, min(self.max_open, env_int("MM_SQLSETTINGS_MAXIDLECONNS", 50)))
        self.query_timeout = env_int("MM_SQLSETTINGS_QUERYTIMEOUT", 30)
        self.lifetime = env_int("MM_SQLSETTINGS_CONNMAXLIFETIMEMILLISECONDS", 3600000) / 1000
        self.idle_time = env_int("MM_SQLSETTINGS_CONNMAXIDLETIMEMILLISECONDS", 300000) / 1000
        self.pool = psycopg2.pool.ThreadedConnectionPool(minconn=0, maxconn=self.max_open, dsn=self.dsn)
        self.pool.minconn = self.max_idle  # psycopg2 keeps at most `minconn` connections idle: MaxIdleConns
        self.slots, self.born, self.used = threading.BoundedSemaphore(self.max_open), {}, {}
        self.settings = {"datasource": re.sub(r":[^:@/]*@", ":****@", self.dsn), "max_open_conns": self.max_open,
                         "max_idle_conns": self.max_idle, "query_timeout": self.query_timeout,
                         "conn_max_lifetime_s": self.lifetime, "conn_max_idle_time_s": self.idle_time}

    def _get(self):
        while True:  # ConnMaxLifetime and ConnMaxIdleTime: retire connections when they are taken out
            conn = self.pool.getconn()
            t, key = time.monotonic(), id(conn)
            old = self.lifetime and t - self.born.setdefault(key, t) > self.lifetime
            if not (conn.closed or old or (self.idle_time and t - self.used.get(key, t) > self.idle_time)):
                return conn
            self._put(conn, close=True)

    def _put(self, conn, close=False):
        self.used[id(conn)] = time.monotonic()
        self.pool.putconn(conn, close=close or conn.closed)
        if conn.closed:  # retired, broken, or beyond MaxIdleConns
            self.born.pop(id(conn), None), self.used.pop(id(conn), None)

    @contextmanager
    def tx(self):
        """One transaction; QueryTimeout as a transaction-local statement_timeout (safe under PgBouncer)."""
        if not self.slots.acquire(timeout=self.query_timeout):
            raise ApiError(500, "app.sql.pool_timeout", "Timed out waiting for a database connection.")
        conn, broken = None, False
        try:
            conn = self._get()
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SET LOCAL statement_timeout = %s", (self.query_timeout * 1000,))
                yield cur
            conn.commit()
        except BaseException as exc:
            broken = isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
            if conn is not None and not conn.closed:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    broken = True
            raise
        finally:
            if conn is not None:
                self._put(conn, close=broken)
            self.slots.release()

    def migrate(self, deadline_s=180):
        """CREATE ... IF NOT EXISTS in one transaction, retried: replicas start at once (no advisory locks)."""
        start = time.monotonic()
        for attempt in itertools.count(1):
            try:
                with self.tx() as cur:
                    cur.execute(SCHEMA_FILE.read_text(encoding="utf-8"))
                return log("info", "Database schema is ready", attempt=attempt)
            except (psycopg2.Error, ApiError) as exc:
                if time.monotonic() - start > deadline_s:
                    raise
                log("warn", "Schema creation failed, retrying", attempt=attempt, error=str(exc).strip())
                time.sleep(min(5.0, 0.2 * attempt) + random.random())


log = db = None
ROUTES, HUB = [], websocket_hub.Hub()
JSON_KEYS = {"createat": "create_at", "updateat": "update_at", "deleteat": "delete_at", "editat": "edit_at", "rootid": "root_id",
             "displayname": "display_name", "firstname": "first_name", "lastname": "last_name", "teamid": "team_id", "userid": "user_id",
             "channelid": "channel_id", "creatorid": "creator_id", "lastpostat": "last_post_at", "totalmsgcount": "total_msg_count",
             "ispinned": "is_pinned", "originalid": "original_id", "allowopeninvite": "allow_open_invite"}
SHAPES = {"user": "id createat updateat deleteat username email nickname firstname lastname roles locale",
          "team": "id createat updateat deleteat displayname name type allowopeninvite",
          "channel": "id createat updateat deleteat teamid type displayname name creatorid lastpostat totalmsgcount",
          "post": "id createat updateat editat deleteat ispinned userid channelid rootid originalid message type props hashtags",
          "teammember": "teamid userid roles deleteat", "channelmember": "channelid userid roles"}


def js(shape, row):  # a row the way Mattermost's API shows it
    return {JSON_KEYS.get(col, col): row[col] for col in SHAPES[shape].split()}


def route(method, pattern, auth=True):
    def add(fn):
        ROUTES.append((method, re.compile("^/api/v4" + pattern + "$"), auth, fn))
        return fn
    return add


def insert(cur, table, row):
    cur.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))}) RETURNING *",
                [json.dumps(v) if isinstance(v, dict) else v for v in row.values()])
    return cur.fetchone()


class Handler(BaseHTTPRequestHandler):  # HTTP/1.1 with keep-alive; every API call in one database transaction
    protocol_version, server_version = "HTTP/1.1", "MattermostDouble/0.1"
    timeout = 60  # idle keep-alive connections close after 60 s (ServiceSettings.IdleTimeout)
    body, query, user_id, roles, token = {}, {}, "", "", ""
    lock, busy, draining = threading.Lock(), 0, threading.Event()  # requests in progress, for the drain

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        log("debug", format % args, remote_addr=self.address_string())

    def address_string(self):
        return self.client_address[0] if self.client_address else "local"

    def need(self, *keys):
        for key in keys:
            if not isinstance(self.body.get(key), str) or not self.body[key]:
                raise ApiError(400, "api.context.invalid_body_param.app_error", f"Invalid or missing {key} in request body.")

    @staticmethod
    def add_team_member(cur, team_id, user_id, roles="team_user"):
        cur.execute("INSERT INTO teammembers (teamid, userid, roles, deleteat, schemeuser, schemeadmin, schemeguest, createat) "
                    "VALUES (%s, %s, %s, 0, true, %s, false, %s) ON CONFLICT (teamid, userid) DO UPDATE SET deleteat = 0 "
                    "RETURNING *", (team_id, user_id, roles, "team_admin" in roles, now_ms()))
        member = cur.fetchone()
        cur.execute("SELECT id FROM channels WHERE teamid = %s AND name IN ('town-square', 'off-topic')", (team_id,))
        for chan in cur.fetchall():
            Handler.add_channel_member(cur, chan["id"], user_id)
        return member

    @staticmethod
    def add_channel_member(cur, channel_id, user_id, roles="channel_user"):
        cur.execute("INSERT INTO channelmembers (channelid, userid, roles, lastupdateat, schemeuser, schemeadmin, schemeguest) "
                    "VALUES (%s, %s, %s, %s, true, %s, false) ON CONFLICT (channelid, userid) DO UPDATE SET lastupdateat = "
                    "EXCLUDED.lastupdateat RETURNING *", (channel_id, user_id, roles, now_ms(), "channel_admin" in roles))
        return cur.fetchone()

    def create_channel(self, cur, team_id, name, display, kind):
        t = now_ms()
        return insert(cur, "channels", {"id": new_id(), "createat": t, "updateat": t, "deleteat": 0, "teamid": team_id,
                                        "type": kind, "displayname": display, "name": name, "creatorid": self.user_id,
                                        "groupconstrained": False, "shared": False})

    @staticmethod
    def team_member(cur, team_id, user_id):
        cur.execute("SELECT 1 FROM teammembers WHERE teamid = %s AND userid = %s AND deleteat = 0", (team_id, user_id))
        return cur.fetchone() is not None

    def load_channel(self, cur, channel_id):
        cur.execute("SELECT c.*, EXISTS (SELECT 1 FROM channelmembers m WHERE m.channelid = c.id AND m.userid = %s) AS member "
                    "FROM channels c WHERE c.id = %s AND c.deleteat = 0", (self.user_id, channel_id))
        chan = cur.fetchone()
        if not chan:
            raise ApiError(404, "app.channel.get.existing.app_error", "Unable to find the existing channel.")
        return chan

    def readable_channel(self, cur, chan):
        """Members read a channel; so do the team's members when it is open, and system admins."""
        if not (chan["member"] or "system_admin" in self.roles
                or (chan["type"] == "O" and self.team_member(cur, chan["teamid"], self.user_id))):
            raise ApiError(*FORBIDDEN)
        return chan

    @route("GET", "/system/ping", auth=False)
    def ping(self):
        out = {"status": "OK", "ActiveSearchBackend": "database", "double": True, "version": VERSION}
        if self.query.get("get_server_status") != "true":
            return 200, out  # liveness only: never touches the database, like Mattermost
        try:
            with db.tx() as cur:
                cur.execute("SELECT 1")
            out["database_status"] = "OK"
        except Exception as exc:  # pylint: disable=broad-except
            out.update(database_status="UNHEALTHY", database_error=str(exc).strip())
        out["filestore_status"] = "OK" if os.access("/mattermost/data", os.W_OK) else "UNHEALTHY"
        healthy = "UNHEALTHY" not in (out["database_status"], out["filestore_status"])
        return (200, out) if healthy else (500, {**out, "status": "UNHEALTHY"})

    @route("POST", "/users", auth=False)
    def create_user(self):
        body = self.body
        self.need("username", "email", "password")
        if not re.match(r"^[a-z][a-z0-9.\-_]{2,21}$", body["username"]) or "@" not in body["email"] or len(body["password"]) < 8:
            raise ApiError(400, "model.user.is_valid.app_error", "Invalid username, email or password (8 characters or more).")
        hashed, t = bcrypt.hashpw(body["password"].encode(), bcrypt.gensalt(10)).decode(), now_ms()  # cost 10, as Mattermost
        with db.tx() as cur:
            cur.execute("SELECT EXISTS (SELECT 1 FROM users) AS any")
            roles = "system_user" if cur.fetchone()["any"] else "system_admin system_user"
            return 201, js("user", insert(cur, "users", {
                "id": new_id(), "createat": t, "updateat": t, "deleteat": 0, "username": body["username"], "password": hashed,
                "email": body["email"].lower(), "nickname": body.get("nickname", ""), "firstname": body.get("first_name", ""),
                "lastname": body.get("last_name", ""), "roles": roles, "lastpasswordupdate": t, "locale": "en"}))

    @route("POST", "/users/login", auth=False)
    def login(self):
        self.need("login_id", "password")
        with db.tx() as cur:
            cur.execute("SELECT * FROM users WHERE (username = %s OR email = %s) AND deleteat = 0",
                        (self.body["login_id"], self.body["login_id"].lower()))
            user = cur.fetchone()
        if not user or not bcrypt.checkpw(self.body["password"].encode(), user["password"].encode()):
            raise ApiError(401, "api.user.login.invalid_credentials_email_username", "Enter a valid email or username and/or password.")
        t, token = now_ms(), new_id()
        with db.tx() as cur:
            insert(cur, "sessions", {"id": new_id(), "token": token, "createat": t, "expiresat": t + 30 * 86400000,
                                     "lastactivityat": t, "userid": user["id"], "roles": user["roles"], "props": {}})
            cur.execute("UPDATE users SET lastlogin = %s WHERE id = %s", (t, user["id"]))
        self.headers_out["Token"] = token
        return 200, js("user", user)

    @route("GET", "/users/me")
    def me(self):
        with db.tx() as cur:
            cur.execute("SELECT * FROM users WHERE id = %s", (self.user_id,))
            return 200, js("user", cur.fetchone())

    @route("POST", "/teams")
    def create_team(self):
        self.need("name", "display_name")
        t, kind = now_ms(), self.body.get("type", "O")
        with db.tx() as cur:
            team = insert(cur, "teams", {"id": new_id(), "createat": t, "updateat": t, "deleteat": 0, "type": kind,
                                         "displayname": self.body["display_name"], "name": self.body["name"],
                                         "inviteid": new_id(), "allowopeninvite": kind == "O", "groupconstrained": False})
            self.create_channel(cur, team["id"], "town-square", "Town Square", "O")
            self.create_channel(cur, team["id"], "off-topic", "Off-Topic", "O")
            self.add_team_member(cur, team["id"], self.user_id, "team_user team_admin")
            return 201, js("team", team)

    @route("POST", "/teams/([a-z0-9]{26})/members")
    def join_team(self, team_id):
        self.need("user_id")
        with db.tx() as cur:
            cur.execute("SELECT * FROM teams WHERE id = %s AND deleteat = 0", (team_id,))
            team = cur.fetchone()
            if not team:
                raise ApiError(404, "app.team.get.find.app_error", "Unable to find the existing team.")
            self_join = self.body["user_id"] == self.user_id and team["allowopeninvite"]
            if not (self_join or "system_admin" in self.roles or self.team_member(cur, team_id, self.user_id)):
                raise ApiError(*FORBIDDEN)
            cur.execute("SELECT 1 FROM users WHERE id = %s AND deleteat = 0", (self.body["user_id"],))
            if not cur.fetchone():
                raise ApiError(400, "app.user.missing_account.const", "Unable to find the user.")
            return 201, js("teammember", self.add_team_member(cur, team_id, self.body["user_id"]))

    @route("GET", "/users/me/teams")
    def my_teams(self):
        with db.tx() as cur:
            cur.execute("SELECT t.* FROM teams t JOIN teammembers m ON m.teamid = t.id WHERE m.userid = %s AND m.deleteat = 0 "
                        "AND t.deleteat = 0 ORDER BY t.displayname", (self.user_id,))
            return 200, [js("team", t) for t in cur.fetchall()]

    @route("GET", "/users/me/teams/([a-z0-9]{26})/channels")
    def my_channels(self, team_id):
        with db.tx() as cur:
            cur.execute("SELECT c.* FROM channels c JOIN channelmembers m ON m.channelid = c.id WHERE m.userid = %s "
                        "AND c.teamid = %s AND c.deleteat = 0 ORDER BY c.displayname", (self.user_id, team_id))
            return 200, [js("channel", c) for c in cur.fetchall()]

    @route("POST", "/channels")
    def new_channel(self):
        self.need("team_id", "name", "display_name")
        kind = self.body.get("type", "O")
        if kind not in ("O", "P"):
            raise ApiError(400, "model.channel.is_valid.type.app_error", "Invalid type.")
        with db.tx() as cur:
            if not self.team_member(cur, self.body["team_id"], self.user_id):
                raise ApiError(*FORBIDDEN)
            chan = self.create_channel(cur, self.body["team_id"], self.body["name"], self.body["display_name"], kind)
            self.add_channel_member(cur, chan["id"], self.user_id, "channel_user channel_admin")
            return 201, js("channel", chan)

    @route("POST", "/channels/([a-z0-9]{26})/members")
    def join_channel(self, channel_id):
        self.need("user_id")
        with db.tx() as cur:
            chan = self.load_channel(cur, channel_id)
            self_join = self.body["user_id"] == self.user_id and chan["type"] == "O"
            if not (chan["member"] or self_join) or not self.team_member(cur, chan["teamid"], self.user_id):
                raise ApiError(*FORBIDDEN)
            if not self.team_member(cur, chan["teamid"], self.body["user_id"]):
                raise ApiError(400, "api.channel.add_user.to.channel.failed.deleted.app_error", "The user is not on the team.")
            return 201, js("channelmember", self.add_channel_member(cur, channel_id, self.body["user_id"]))

    @route("POST", "/posts")
    def create_post(self):
        self.need("channel_id")
        message, root, t = str(self.body.get("message", "")), self.body.get("root_id") or "", now_ms()
        if len(message) > 16383:
            raise ApiError(400, "model.post.is_valid.msg.app_error", "Invalid message.")
        with db.tx() as cur:
            if not self.load_channel(cur, self.body["channel_id"])["member"]:
                raise ApiError(*FORBIDDEN)
            post = insert(cur, "posts", {
                "id": new_id(), "createat": t, "updateat": t, "editat": 0, "deleteat": 0, "ispinned": False,
                "userid": self.user_id, "channelid": self.body["channel_id"], "rootid": root, "originalid": "",
                "message": message, "type": "", "props": self.body.get("props") or {}, "filenames": "[]", "fileids": "[]",
                "hashtags": " ".join(w for w in message.split() if w.startswith("#")), "hasreactions": False})
            cur.execute("UPDATE channels SET lastpostat = %s, totalmsgcount = totalmsgcount + 1, lastrootpostat = "
                        "CASE WHEN %s = '' THEN %s ELSE lastrootpostat END WHERE id = %s", (t, root, t, post["channelid"]))
            if root:
                cur.execute("INSERT INTO threads (postid, replycount, lastreplyat, participants, channelid, threaddeleteat) "
                            "VALUES (%s, 1, %s, %s, %s, 0) ON CONFLICT (postid) DO UPDATE SET replycount = "
                            "threads.replycount + 1, lastreplyat = EXCLUDED.lastreplyat",
                            (root, t, json.dumps([self.user_id]), post["channelid"]))
            cur.execute("SELECT c.*, u.username, array(SELECT m.userid FROM channelmembers m WHERE m.channelid = c.id) "
                        "AS members FROM channels c, users u WHERE c.id = %s AND u.id = %s", (post["channelid"], self.user_id))
            chan = cur.fetchone()
        HUB.publish(chan["members"], "posted", {  # after the commit, to this process's connections (no cluster)
            "channel_display_name": chan["displayname"], "channel_name": chan["name"], "channel_type": chan["type"],
            "post": json.dumps(js("post", post)), "sender_name": "@" + chan["username"], "set_online": True,
            "team_id": chan["teamid"]}, {"channel_id": chan["id"]})
        return 201, js("post", post)

    @route("GET", "/channels/([a-z0-9]{26})/posts")
    def channel_posts(self, channel_id):
        page, per_page = int(self.query.get("page", 0)), min(200, int(self.query.get("per_page", 60)))
        with db.tx() as cur:
            self.readable_channel(cur, self.load_channel(cur, channel_id))
            cur.execute("SELECT * FROM posts WHERE channelid = %s AND deleteat = 0 ORDER BY createat DESC LIMIT %s OFFSET %s",
                        (channel_id, per_page, page * per_page))
            posts = [js("post", p) for p in cur.fetchall()]
        return 200, {"order": [p["id"] for p in posts], "posts": {p["id"]: p for p in posts}, "next_post_id": "",
                     "prev_post_id": "", "has_next": len(posts) == per_page}

    def paging(self, default=60):
        try:
            page, per_page = int(self.query.get("page", 0)), int(self.query.get("per_page", default))
        except ValueError as exc:
            raise ApiError(400, "api.context.invalid_url_param.app_error", "Invalid page or per_page.") from exc
        per_page = max(1, min(200, per_page))
        return per_page, max(0, page) * per_page

    @route("GET", "/users")
    def users(self):
        limit, offset = self.paging(60)
        with db.tx() as cur:
            cur.execute("SELECT * FROM users WHERE deleteat = 0 ORDER BY username LIMIT %s OFFSET %s", (limit, offset))
            return 200, [js("user", u) for u in cur.fetchall()]

    @route("POST", "/users/logout")
    def logout(self):
        with db.tx() as cur:
            cur.execute("DELETE FROM sessions WHERE token = %s", (self.token,))
        return 200, {"status": "OK"}

    @route("GET", "/teams/([a-z0-9]{26})/channels")
    def public_channels(self, team_id):
        limit, offset = self.paging(60)
        with db.tx() as cur:
            if not (self.team_member(cur, team_id, self.user_id) or "system_admin" in self.roles):
                raise ApiError(*FORBIDDEN)
            cur.execute("SELECT * FROM channels WHERE teamid = %s AND type = 'O' AND deleteat = 0 ORDER BY displayname "
                        "LIMIT %s OFFSET %s", (team_id, limit, offset))
            return 200, [js("channel", c) for c in cur.fetchall()]

    @route("GET", "/channels/([a-z0-9]{26})")
    def channel(self, channel_id):
        with db.tx() as cur:
            return 200, js("channel", self.readable_channel(cur, self.load_channel(cur, channel_id)))

    @route("GET", "/teams/([a-z0-9]{26})/channels/name/([a-z0-9_\\-]{1,64})")
    def channel_by_name(self, team_id, name):
        with db.tx() as cur:
            cur.execute("SELECT id FROM channels WHERE teamid = %s AND name = %s AND deleteat = 0", (team_id, name))
            row = cur.fetchone()
            if not row:
                raise ApiError(404, "app.channel.get_by_name.missing.app_error", "Channel does not exist.")
            return 200, js("channel", self.readable_channel(cur, self.load_channel(cur, row["id"])))

    @route("GET", "/posts/([a-z0-9]{26})")
    def post(self, post_id):
        with db.tx() as cur:
            cur.execute("SELECT * FROM posts WHERE id = %s AND deleteat = 0", (post_id,))
            post = cur.fetchone()
            if not post:
                raise ApiError(404, "app.post.get.app_error", "Unable to get the post.")
            self.readable_channel(cur, self.load_channel(cur, post["channelid"]))
            return 200, js("post", post)

    def request_token(self):
        """The session token of the Authorization header (Bearer or Token), else of the MMAUTHTOKEN cookie."""
        scheme, _space, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("bearer", "token"):
            return token.strip()
        cookies = dict(c.strip().partition("=")[::2] for c in self.headers.get("Cookie", "").split(";") if "=" in c)
        return cookies.get("MMAUTHTOKEN", "")

    @staticmethod
    def session(token):
        with db.tx() as cur:
            cur.execute("SELECT userid, roles FROM sessions WHERE token = %s AND expiresat > %s", (token, now_ms()))
            return cur.fetchone()

    def authenticate(self):
        self.token = self.request_token()
        row = self.session(self.token) if self.token else None
        if not row:
            raise ApiError(*EXPIRED)
        self.user_id, self.roles = row["userid"], row["roles"]

    def websocket(self):
        """GET /api/v4/websocket with Upgrade: websocket (websocket_hub.py)."""
        self.send_response(101)
        for header, value in (("Upgrade", "websocket"), ("Connection", "Upgrade"),
                              ("Sec-WebSocket-Accept", websocket_hub.accept_key(self.headers["Sec-WebSocket-Key"]))):
            self.send_header(header, value)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self.connection.settimeout(None)  # idle is normal here: the hub's pings find dead clients
        conn = websocket_hub.WebConn(self, HUB, lambda t: (self.session(t) or {}).get("userid"), VERSION, log)
        log("debug", "Websocket connected", remote_addr=self.address_string())
        conn.serve(self.request_token())

    def call(self, method, path, raw):
        for r_method, pattern, auth, fn in ROUTES:
            match = pattern.match(path)
            if match and r_method == method:
                break
        else:
            raise ApiError(404, "api.context.404.app_error", "Sorry, we could not find the page.")
        rate = INJECTED_FAULT.get("rate", float(env("MMDOUBLE_FAIL_RATE") or 0))
        if rate and fn is not Handler.ping and random.random() < rate:  # hidden fault injection for tests
            raise ApiError(env_int("MMDOUBLE_FAIL_STATUS", 500), "mmdouble.injected_fault", "Injected fault.")
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ApiError(400, "api.context.invalid_body_param.app_error", "Invalid JSON body.") from exc
        self.body = body if isinstance(body, dict) else {}
        if auth:
            self.authenticate()
        return fn(self, *match.groups())

    def dispatch(self, method):
        start, self.headers_out, request_id = time.monotonic(), {}, new_id()
        url = urllib.parse.urlsplit(self.path)
        self.query = dict(urllib.parse.parse_qsl(url.query))
        if (method == "GET" and url.path in ("/api/v4/websocket", "/api/v4/users/websocket")
                and "websocket" in self.headers.get("Upgrade", "").lower() and self.headers.get("Sec-WebSocket-Key")):
            return self.websocket()
        with Handler.lock:
            Handler.busy += 1
        try:
            length = int(self.headers.get("Content-Length") or 0)
            status, payload = self.call(method, url.path, self.rfile.read(length) if length else b"")
        except ApiError as exc:
            status, payload = exc.status, {"id": exc.err_id, "message": exc.message, "detailed_error": ""}
        except psycopg2.errors.UniqueViolation as exc:
            status, payload = 400, {"id": "store.sql.unique_violation", "message": "A record with that name already exists.",
                                    "detailed_error": str(exc).split("\n", maxsplit=1)[0]}
        except Exception as exc:  # pylint: disable=broad-except
            log("error", "Request failed", path=url.path, method=method, error=repr(exc), trace=traceback.format_exc())
            status, payload = 500, {"id": "app.internal_error", "message": "An internal error occurred.",
                                    "detailed_error": type(exc).__name__}
        if status >= 400:  # Mattermost's AppError
            payload.update(request_id=request_id, status_code=status)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), "X-Request-Id": request_id,
                               "X-Version-Id": VERSION, **self.headers_out}.items():
                self.send_header(key, value)
            if Handler.draining.is_set():  # shutting down: no more requests on this connection
                self.close_connection = True
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        finally:
            with Handler.lock:
                Handler.busy -= 1
        log("error" if status >= 500 else "debug", "Received HTTP request", method=method, url=url.path, status_code=status,
            request_id=request_id, duration_ms=round((time.monotonic() - start) * 1000, 1))


for _method in ("GET", "POST", "PUT", "DELETE"):
    setattr(Handler, "do_" + _method, lambda self, m=_method: self.dispatch(m))


def drain(server, done):
    """SIGTERM, like Mattermost's graceful shutdown: stop accepting, let requests in progress finish (within 9 s)."""
    Handler.draining.set()
    log("info", "Stopping Server...", requests_in_progress=Handler.busy)
    HUB.close_all()
    server.shutdown(), server.socket.close()
    deadline = time.monotonic() + 8
    time.sleep(1)  # each keep-alive connection in use gets one more request, answered with Connection: close
    while Handler.busy and time.monotonic() < deadline:
        time.sleep(0.05)
    log("info", "Server stopped")
    done.set()


class LocalModeServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """ServiceSettings.EnableLocalMode: the API on a Unix socket (mode 0600) for mmctl --local in the container."""
    daemon_threads = True


def serve_local_mode():
    if env("MM_SERVICESETTINGS_ENABLELOCALMODE", "false").lower() != "true":
        return
    path = env("MM_SERVICESETTINGS_LOCALMODESOCKETLOCATION", "/var/tmp/mattermost_local.socket")
    if os.path.exists(path):
        os.unlink(path)
    server = LocalModeServer(path, Handler)
    os.chmod(path, 0o600)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("info", "Local mode socket listening", socket=path)


def main():
    global log, db  # pylint: disable=global-statement
    log, listen, site_url = Log(), env("MM_SERVICESETTINGS_LISTENADDRESS", ":8065"), env("MM_SERVICESETTINGS_SITEURL")
    db = Database()
    log("info", "Server is initializing... (Mattermost TEST DOUBLE, not Mattermost)", version=VERSION, site_url=site_url,
        gomaxprocs=env("GOMAXPROCS"), gomemlimit=env("GOMEMLIMIT"), cluster=env("MM_CLUSTERSETTINGS_ENABLE"), **db.settings)
    if db.binary_parameters:
        log("info", f"DataSource has binary_parameters={db.binary_parameters}: a lib/pq option, removed since libpq rejects it")
    if not site_url:
        log("warn", "ServiceSettings.SiteURL is not set")
    db.migrate()
    host, _colon, port = listen.rpartition(":")
    server, done = ThreadingHTTPServer((host, int(port or 8065)), Handler), threading.Event()  # daemon threads
    serve_local_mode()  # after the listener: healthy (mmctl system status --local) means serving
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_args: threading.Thread(target=drain, args=(server, done)).start())
    signal.signal(signal.SIGUSR1, lambda *_args: INJECTED_FAULT.update(rate=1.0))
    signal.signal(signal.SIGUSR2, lambda *_args: INJECTED_FAULT.clear())
    log("info", f"Server is listening on {listen}", address=listen)
    server.serve_forever(poll_interval=0.2)
    done.wait(10)


if __name__ == "__main__":
    main()
