"""Lab pgbouncer exporter: upstream pgbouncer_exporter's metric names, read from a real PgBouncer."""
import argparse
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

# SHOW <command>: {column: (metric suffix, factor, type)}; the other text columns become labels.
COLUMNS = {
    "databases": {"pool_size": ("pool_size", 1, "gauge"), "reserve_pool": ("reserve_pool", 1, "gauge"),
                  "reserve_pool_size": ("reserve_pool", 1, "gauge"),
                  "max_connections": ("max_connections", 1, "gauge"),
                  "current_connections": ("current_connections", 1, "gauge"),
                  "paused": ("paused", 1, "gauge"), "disabled": ("disabled", 1, "gauge")},
    "pools": {"cl_active": ("client_active_connections", 1, "gauge"),
              "cl_waiting": ("client_waiting_connections", 1, "gauge"),
              "sv_active": ("server_active_connections", 1, "gauge"),
              "sv_idle": ("server_idle_connections", 1, "gauge"),
              "sv_used": ("server_used_connections", 1, "gauge"),
              "sv_tested": ("server_testing_connections", 1, "gauge"),
              "sv_login": ("server_login_connections", 1, "gauge"),
              "maxwait": ("client_maxwait_seconds", 1, "gauge")},
    "stats": {"total_query_count": ("queries_pooled_total", 1, "counter"),
              "total_query_time": ("queries_duration_seconds_total", 1e-6, "counter"),
              "total_received": ("received_bytes_total", 1, "counter"),
              "total_sent": ("sent_bytes_total", 1, "counter"),
              "total_wait_time": ("client_wait_seconds_total", 1e-6, "counter"),
              "total_xact_count": ("sql_transactions_pooled_total", 1, "counter"),
              "total_xact_time": ("server_in_transaction_seconds_total", 1e-6, "counter")},
}
LABELS = {"databases": ("name", "host", "port", "database", "force_user", "pool_mode"),
          "pools": ("database", "user"), "stats": ("database",)}
LISTS = {"databases": "databases", "users": "users", "pools": "pools", "free_clients": "free_clients",
         "used_clients": "used_clients", "login_clients": "login_clients", "free_servers": "free_servers",
         "used_servers": "used_servers", "dns_names": "cached_dns_names", "dns_zones": "cached_dns_zones",
         "dns_queries": "in_flight_dns_queries"}
CONFIG = {"max_client_conn": "config_max_client_connections",
          "max_user_connections": "config_max_user_connections"}


def esc(value):
    return str(value if value is not None else "").replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def show(cur, what):
    cur.execute(f"SHOW {what}")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def collect(dsn):
    out, seen = [], set()

    def emit(name, kind, value, labels=None):
        if name not in seen:
            seen.add(name)
            out.append(f"# TYPE {name} {kind}")
        lab = ",".join(f'{k}="{esc(v)}"' for k, v in (labels or {}).items())
        out.append(f"{name}{{{lab}}} {float(value)}" if lab else f"{name} {float(value)}")

    try:
        conn = psycopg2.connect(dsn, connect_timeout=5)  # pgbouncer_up 0 within the scrape timeout, never a hang
        conn.autocommit = True  # the admin console knows no BEGIN
        with conn.cursor() as cur:
            for what, cols in COLUMNS.items():
                for row in show(cur, what.upper()):
                    labels = {k: row.get(k) for k in LABELS[what] if k in row}
                    for col, (suffix, factor, kind) in cols.items():
                        if row.get(col) is not None:
                            emit(f"pgbouncer_{what}_{suffix}", kind, float(row[col]) * factor, labels)
            for row in show(cur, "LISTS"):
                if row["list"] in LISTS:
                    emit(f"pgbouncer_{LISTS[row['list']]}", "gauge", row["items"])
            for row in show(cur, "CONFIG"):
                if row["key"] in CONFIG:
                    emit(f"pgbouncer_{CONFIG[row['key']]}", "gauge", row["value"])
            version = show(cur, "VERSION")[0]
            emit("pgbouncer_version_info", "gauge", 1, {"version": next(iter(version.values()))})
        conn.close()
        emit("pgbouncer_up", "gauge", 1)
    except Exception as exc:  # pylint: disable=broad-except
        print(f"scrape failed: {exc}", file=sys.stderr, flush=True)
        emit("pgbouncer_up", "gauge", 0)
    return ("\n".join(out) + "\n").encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pgBouncer.connectionString", dest="dsn",
                        default=os.environ.get("PGBOUNCER_EXPORTER_CONNECTION_STRING",
                                               "postgres://postgres:@localhost:6543/pgbouncer?sslmode=disable"))
    parser.add_argument("--web.listen-address", dest="listen", default=":9127")
    parser.add_argument("--web.telemetry-path", dest="path", default="/metrics")
    args, unknown = parser.parse_known_args()
    if unknown:
        print(f"ignoring flags the lab port does not implement: {unknown}", file=sys.stderr, flush=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = collect(args.dsn) if self.path.split("?")[0] == args.path else b"pgbouncer_exporter (lab port)\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    host, _, port = args.listen.rpartition(":")
    print(f"listening on {args.listen}", flush=True)
    ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
