"""TEST DOUBLE of cAdvisor: /healthz and a few container_* series per container the Docker socket lists."""
import http.client
import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

START = time.time()


class DockerSocket(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect("/var/run/docker.sock")


def containers():
    try:
        conn = DockerSocket("docker", timeout=2)
        conn.request("GET", "/containers/json")
        return [(c["Names"][0].lstrip("/"), c["Id"]) for c in json.loads(conn.getresponse().read())]
    except OSError:
        return [("cadvisor-double", "0" * 64)]


def metrics():
    lines = ["# TYPE container_cpu_usage_seconds_total counter", "# TYPE container_memory_working_set_bytes gauge",
             "# TYPE container_spec_memory_limit_bytes gauge", "# TYPE container_start_time_seconds gauge",
             "# TYPE container_oom_events_total counter"]
    up = time.time() - START
    for name, cid in containers():
        lab = f'id="/docker/{cid}",image="double",name="{name}"'
        lines += [f"container_cpu_usage_seconds_total{{{lab},cpu=\"total\"}} {up * 0.01:.3f}",
                  f"container_memory_working_set_bytes{{{lab}}} {16 * 2**20}",
                  f"container_spec_memory_limit_bytes{{{lab}}} {256 * 2**20}",
                  f"container_start_time_seconds{{{lab}}} {START:.0f}",
                  f"container_oom_events_total{{{lab}}} 0"]
    return ("\n".join(lines) + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = metrics() if self.path.startswith("/metrics") else b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


KINDS = {"cpu", "sched", "percpu", "memory", "memory_numa", "cpuLoad", "diskIO", "disk", "network", "tcp", "advtcp",
         "udp", "app", "process", "hugetlb", "perf_event", "referenced_memory", "cpu_topology", "resctrl", "cpuset",
         "oom_event", "pressure"}  # cAdvisor's metric kinds (container.MetricKind)

if __name__ == "__main__":
    for arg in sys.argv[1:]:
        flag, _, value = arg.lstrip("-").partition("=")
        if flag in ("enable_metrics", "disable_metrics") and set(value.split(",")) - KINDS:
            sys.exit(f"invalid value {value!r} for flag -{flag}: unknown metric kinds {sorted(set(value.split(',')) - KINDS)}")
    print("cAdvisor TEST DOUBLE (not cAdvisor) on :8080", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
