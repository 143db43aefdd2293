#!/opt/mmdouble/bin/python3
"""mmctl TEST DOUBLE (not mmctl): only `mmctl system status --local`, the official image's health check.

Like mmctl: --local talks to the server's local-mode socket ($MMCTL_LOCAL_SOCKET_PATH, default
/var/tmp/mattermost_local.socket), which exists only when ServiceSettings.EnableLocalMode is true;
`system status` asks for the full server status (database and file store) and fails unless it is OK."""
import http.client
import json
import os
import socket
import sys


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def main(args):
    if [a for a in args if not a.startswith("-")] != ["system", "status"] or "--local" not in args:
        print("mmctl TEST DOUBLE: only `mmctl system status --local` is implemented", file=sys.stderr)
        return 2
    path = os.environ.get("MMCTL_LOCAL_SOCKET_PATH", "/var/tmp/mattermost_local.socket")
    try:
        conn = UnixConnection(path)
        conn.request("GET", "/api/v4/system/ping?get_server_status=true")
        resp = conn.getresponse()
        status = json.loads(resp.read() or b"{}")
    except (OSError, ValueError) as exc:
        print(f"Error: cannot connect to the server in local mode at {path}: {exc}", file=sys.stderr)
        return 1
    for key in ("status", "database_status", "filestore_status"):
        print(f"{key}: {status.get(key, '')}")
    return 0 if resp.status == 200 and status.get("status") == "OK" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
