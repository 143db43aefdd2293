"""TEST DOUBLE of Grafana: health, provisioning as read from disk, and a minimal read-only API."""
import base64
import glob
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def log(msg, **kv):
    print(json.dumps({"logger": "grafana-double", "msg": msg, **kv}), flush=True)


def env(name, default=""):
    """GF_<SECTION>_<KEY>, or the content of the file named by GF_<SECTION>_<KEY>__FILE."""
    if os.environ.get(name + "__FILE"):
        with open(os.environ[name + "__FILE"], encoding="utf-8") as fh:
            return fh.read().strip()
    return os.environ.get(name, default)


PROV = env("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")
DOMAIN = env("GF_SERVER_DOMAIN", "localhost")
ROOT_URL = env("GF_SERVER_ROOT_URL", "%(protocol)s://%(domain)s:%(http_port)s/") % {
    "protocol": env("GF_SERVER_PROTOCOL", "http"), "domain": DOMAIN, "http_port": env("GF_SERVER_HTTP_PORT", "3000")}
SUB_PATH = urlsplit(ROOT_URL).path.rstrip("/") if env("GF_SERVER_SERVE_FROM_SUB_PATH") == "true" else ""
ADMIN = (env("GF_SECURITY_ADMIN_USER", "admin"), env("GF_SECURITY_ADMIN_PASSWORD", "admin"))


def items(text, key):
    """List items under a top-level `key:` of a simple YAML file: one dict of scalars per `- ` item."""
    block = re.split(rf"(?m)^{key}:\s*$", text, maxsplit=1)
    if len(block) < 2:
        return []
    out = []
    for chunk in re.split(r"(?m)^\s*-\s+(?=\w+:)", block[1])[1:]:
        item = {}
        for k, v in re.findall(r"(?m)^\s*(\w+):[ \t]*(\S[^\n]*)$", chunk):
            item.setdefault(k, v.strip().strip("'\""))
        out.append(item)
    return out


def load():
    datasources, dashboards = [], []
    for path in sorted(glob.glob(f"{PROV}/datasources/*.y*ml")):
        with open(path, encoding="utf-8") as fh:
            found = items(fh.read(), "datasources")
        log("provisioned datasources", file=path, names=[d.get("name") for d in found])
        datasources += [{k: d.get(k) for k in ("uid", "name", "type", "url", "access", "isDefault")} for d in found]
    for path in sorted(glob.glob(f"{PROV}/dashboards/*.y*ml")):
        with open(path, encoding="utf-8") as fh:
            for provider in items(fh.read(), "providers"):
                for board in sorted(glob.glob(f"{provider.get('path', '/nonexistent')}/**/*.json", recursive=True)):
                    with open(board, encoding="utf-8") as bf:
                        data = json.load(bf)
                    dashboards.append({"uid": data["uid"], "title": data["title"], "type": "dash-db",
                                       "tags": data.get("tags", []), "url": f"{SUB_PATH}/d/{data['uid']}",
                                       "folderTitle": provider.get("folder", ""), "_json": data})
                    log("provisioned dashboard", provider=provider.get("name"), file=board, uid=data["uid"],
                        title=data["title"])
    return datasources, dashboards


DATASOURCES, DASHBOARDS = load()


class Handler(BaseHTTPRequestHandler):
    server_version = "GrafanaDouble/0"

    def reply(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "basic" and base64.b64decode(value or "").decode(errors="replace") == ":".join(ADMIN)

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        path = url.path[len(SUB_PATH):] if SUB_PATH and url.path.startswith(SUB_PATH + "/") else url.path
        if path == "/api/health":
            return self.reply(200, {"database": "ok", "version": "test-double", "double": True})
        if path == "/metrics":
            return self.reply(200, b'grafana_build_info{version="test-double"} 1\n', "text/plain")
        if not path.startswith("/api/"):
            return self.reply(200, f"<html>Grafana TEST DOUBLE at {ROOT_URL}</html>".encode(), "text/html")
        if not self.authorized():
            return self.reply(401, {"message": "Unauthorized"})
        if path == "/api/search":
            query = parse_qs(url.query).get("query", [""])[0].lower()
            return self.reply(200, [{k: v for k, v in d.items() if k != "_json"}
                                    for d in DASHBOARDS if query in d["title"].lower()])
        if path == "/api/datasources":
            return self.reply(200, DATASOURCES)
        match = re.fullmatch(r"/api/dashboards/uid/([\w-]+)", path)
        board = next((d for d in DASHBOARDS if match and d["uid"] == match.group(1)), None)
        if board:
            return self.reply(200, {"dashboard": board["_json"], "meta": {"provisioned": True}})
        return self.reply(404, {"message": "Not found"})

    def log_message(self, fmt, *args):
        log("request", line=fmt % args)


def main():
    port = int(env("GF_SERVER_HTTP_PORT", "3000"))
    log("Grafana TEST DOUBLE starting (not Grafana)", root_url=ROOT_URL, sub_path=SUB_PATH, port=port,
        datasources=len(DATASOURCES), dashboards=len(DASHBOARDS))
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    sys.exit(main())
