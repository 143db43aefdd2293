"""TEST DOUBLE of Grafana Alloy (not Alloy): readiness, reload and metrics endpoints; `validate` and
`fmt` check only that braces, brackets and quotes balance.

As strict as the image where the roles can get it wrong (tests/lab/contracts/alloy.yml): `run`
creates a directory per labelled component under --storage.path and exits when it cannot (the
official image's data directory is 473:473 mode 0770), and it asks the Docker socket named in the
configuration for the containers, as discovery.docker does; the answer is on /metrics
(alloy_double_docker_api_up) and in the log. Like loki.source.docker, it then ships the containers'
new log lines every few seconds to the URL of loki.write (a JSON push, stream labels job and
container), so a test can see lines arrive in Loki only while Alloy really runs."""
import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"docker_up": 0, "pushed_lines": 0}


def strip(text):
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)  # drop string literals
    return re.sub(r"(?m)//.*$", "", text)


def check(path):
    with open(path, encoding="utf-8") as fh:
        raw = fh.read()
    text = strip(raw)
    if text.count('"') % 2 or text.count("{") != text.count("}") or text.count("[") != text.count("]"):
        sys.exit(f"{path}: unbalanced braces, brackets or quotes")
    return raw, re.findall(r'(?m)^\s*([a-z_.]+)\s+"([^"]*)"\s*\{', raw)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def docker_get(socket_path, path):
    conn = UnixConnection(socket_path)
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


def ask_docker(raw):
    match = re.search(r'host\s*=\s*"unix://([^"]+)"', raw)
    if not match:
        return None
    try:
        status, _body = docker_get(match.group(1), "/containers/json")
        STATE["docker_up"] = int(status == 200)
    except OSError as exc:
        print(f'level=error msg="discovery.docker: cannot reach the Docker API" host={match.group(1)} err="{exc}"',
              flush=True)
    return match.group(1)


def frames(data):
    """The lines of Docker's multiplexed log stream (8-byte header per frame)."""
    out = []
    while len(data) >= 8:
        size = int.from_bytes(data[4:8], "big")
        out.extend(data[8:8 + size].decode(errors="replace").splitlines())
        data = data[8 + size:]
    return out


def ship(socket_path, push_url):
    """loki.source.docker and loki.write, roughly: new lines of every container, pushed every 5 s."""
    since = int(time.time()) - 60
    while True:
        now = int(time.time())
        streams = []
        try:
            _status, body = docker_get(socket_path, "/containers/json")
            for container in json.loads(body):
                name = container["Names"][0].lstrip("/")
                job = container.get("Labels", {}).get("org.mattermost-ops.service", "docker")
                _status, logs = docker_get(socket_path, f"/containers/{container['Id']}/logs?stdout=1&stderr=1"
                                                        f"&since={since}&until={now}")
                lines = frames(logs)
                if lines:
                    stamp = str(time.time_ns())
                    streams.append({"stream": {"job": job, "container": name},
                                    "values": [[stamp, line] for line in lines]})
            if streams:
                request = urllib.request.Request(push_url, data=json.dumps({"streams": streams}).encode(),
                                                 headers={"Content-Type": "application/json"}, method="POST")
                urllib.request.urlopen(request, timeout=10).close()
                STATE["pushed_lines"] += sum(len(s["values"]) for s in streams)
            since = now
        except (OSError, ValueError, KeyError) as exc:
            print(f'level=warn msg="loki.write: push failed" err="{exc}"', flush=True)
        time.sleep(5)


class Handler(BaseHTTPRequestHandler):
    def reply(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/metrics"):
            return self.reply(f'alloy_build_info{{version="test-double"}} 1\n'
                              f'alloy_double_docker_api_up {STATE["docker_up"]}\n'
                              f'alloy_double_pushed_lines_total {STATE["pushed_lines"]}\n'.encode())
        return self.reply(b"Alloy is ready.\n")

    do_POST = do_GET  # /-/reload

    def log_message(self, *_):
        pass


def main(args):
    if args[:1] in (["fmt"], ["validate"]):
        check(next(a for a in args[1:] if not a.startswith("-")))
        return 0
    config = next((a for a in args[1:] if not a.startswith("-")), "/etc/alloy/config.alloy")
    listen = next((a.split("=", 1)[1] for a in args if a.startswith("--server.http.listen-addr=")), "127.0.0.1:12345")
    storage = next((a.split("=", 1)[1] for a in args if a.startswith("--storage.path=")), "data-alloy")
    raw, components = check(config)
    for kind, label in components:
        try:
            os.makedirs(os.path.join(storage, f"{kind}.{label}"), exist_ok=True)
        except OSError as exc:
            sys.exit(f'level=error msg="failed to create the data directory of {kind}.{label}" err="{exc}"')
    socket_path = ask_docker(raw)
    push_url = re.search(r'loki\.write\s+"[^"]*"\s*\{.*?url\s*=\s*"([^"]+)"', raw, re.S)
    if socket_path and push_url:
        threading.Thread(target=ship, args=(socket_path, push_url.group(1)), daemon=True).start()
    print(f"Alloy TEST DOUBLE (not Alloy): {config} has {len(components)} labelled components", flush=True)
    host, _, port = listen.rpartition(":")
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
