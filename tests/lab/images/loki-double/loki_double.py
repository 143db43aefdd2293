"""TEST DOUBLE of Loki: /ready, /metrics, push accepted and counted, labels of JSON pushes."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"pushes": 0, "bytes": 0, "labels": set()}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        if path == "/ready":
            return self.reply(200, b"ready\n", "text/plain")
        if path == "/metrics":
            with LOCK:
                text = (f'loki_build_info{{version="test-double"}} 1\n'
                        f'loki_distributor_push_requests_total {STATE["pushes"]}\n'
                        f'loki_distributor_bytes_received_total {STATE["bytes"]}\n')
            return self.reply(200, text.encode(), "text/plain")
        if path == "/loki/api/v1/labels":
            with LOCK:
                return self.reply(200, {"status": "success", "data": sorted(STATE["labels"])})
        if path.startswith("/loki/api/v1/query"):
            return self.reply(200, {"status": "success", "data": {"resultType": "streams", "result": []}})
        return self.reply(404, b"404 page not found\n", "text/plain")

    def do_POST(self):  # noqa: N802
        if self.path.split("?")[0] != "/loki/api/v1/push":
            return self.reply(404, b"404 page not found\n", "text/plain")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        labels = set()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            try:
                labels = {k for s in json.loads(body)["streams"] for k in s.get("stream", {})}
            except (ValueError, KeyError, TypeError):
                return self.reply(400, b"invalid JSON push\n", "text/plain")
        with LOCK:  # protobuf+snappy (what Alloy sends) is accepted and counted, not decoded
            STATE["pushes"] += 1
            STATE["bytes"] += len(body)
            STATE["labels"] |= labels
        return self.reply(204, b"")

    def log_message(self, *_):
        pass


if __name__ == "__main__":
    CONFIG = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("-config.file=")), "")
    if CONFIG:
        open(CONFIG, encoding="utf-8").close()  # the file must exist and be readable
    if "-verify-config" in sys.argv:
        print(f"{CONFIG}: exists (the TEST DOUBLE does not check its content)")
        sys.exit(0)
    print(f"Loki TEST DOUBLE (not Loki), args {sys.argv[1:]}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 3100), Handler).serve_forever()
