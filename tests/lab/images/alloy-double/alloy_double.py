"""TEST DOUBLE of Grafana Alloy: readiness, reload and metrics endpoints; a brace/quote balance check."""
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def check(path):
    with open(path, encoding="utf-8") as fh:
        text = re.sub(r'"(\\.|[^"\\])*"', '""', fh.read())  # drop string literals
    text = re.sub(r"(?m)//.*$", "", text)
    if text.count('"') % 2 or text.count("{") != text.count("}") or text.count("[") != text.count("]"):
        sys.exit(f"{path}: unbalanced braces, brackets or quotes")
    return len(re.findall(r'(?m)^\s*[a-z_.]+\s+""\s*\{', text))


class Handler(BaseHTTPRequestHandler):
    def reply(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/metrics"):
            return self.reply(b'alloy_build_info{version="test-double"} 1\n')
        return self.reply(b"Alloy is ready.\n")

    do_POST = do_GET  # /-/reload

    def log_message(self, *_):
        pass


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["fmt"]:  # `alloy fmt FILE`: the double checks only the balance
        check(args[1])
        sys.exit(0)
    config = next((a for a in args[1:] if not a.startswith("-")), "/etc/alloy/config.alloy")
    listen = next((a.split("=", 1)[1] for a in args if a.startswith("--server.http.listen-addr=")), "0.0.0.0:12345")
    print(f"Alloy TEST DOUBLE (not Alloy): {config} has {check(config)} labelled components", flush=True)
    host, _, port = listen.rpartition(":")
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
