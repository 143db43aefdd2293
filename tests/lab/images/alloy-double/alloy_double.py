"""TEST DOUBLE of Grafana Alloy (not Alloy): readiness, reload and metrics endpoints; `validate` and
`fmt` check only that braces, brackets and quotes balance.

As strict as the image where the roles can get it wrong (tests/lab/contracts/alloy.yml): `run`
creates a directory per labelled component under --storage.path and exits when it cannot (the
official image's data directory is 473:473 mode 0770), and it asks the Docker socket named in the
configuration for the containers, as discovery.docker does; the answer is on /metrics
(alloy_double_docker_api_up) and in the log."""
import http.client
import os
import re
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"docker_up": 0}


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


def ask_docker(raw):
    match = re.search(r'host\s*=\s*"unix://([^"]+)"', raw)
    if not match:
        return
    try:
        conn = UnixConnection(match.group(1))
        conn.request("GET", "/containers/json")
        STATE["docker_up"] = int(conn.getresponse().status == 200)
    except OSError as exc:
        print(f'level=error msg="discovery.docker: cannot reach the Docker API" host={match.group(1)} err="{exc}"',
              flush=True)


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
                              f'alloy_double_docker_api_up {STATE["docker_up"]}\n'.encode())
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
    ask_docker(raw)
    print(f"Alloy TEST DOUBLE (not Alloy): {config} has {len(components)} labelled components", flush=True)
    host, _, port = listen.rpartition(":")
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
