"""The Mattermost TEST DOUBLE's websocket (/api/v4/websocket), RFC 6455 on the HTTP handler's socket.

Like Mattermost's web_conn.go and web_hub.go: the token comes from the upgrade request's
Authorization header or MMAUTHTOKEN cookie, or later from an `authentication_challenge` action;
an authenticated connection gets `hello` (seq 0) and then the events of the channels its user is
a member of, each with the next `seq`; actions are answered with {"status", "seq_reply"}; the
server pings every 60 s and drops a client silent for 100 s. Events stay within one process, as
with unlicensed Mattermost servers sharing a database (no cluster: mattermost/mattermost#21955)."""
import base64
import hashlib
import json
import socket
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0
MAX_MESSAGE = 64 * 1024
PING_INTERVAL, PONG_WAIT = 60, 100
NOT_AUTHENTICATED = {"id": "api.web_socket_router.not_authenticated.app_error",
                     "message": "The websocket connection is not authenticated."}


class Hub:
    """Connections of this process by user id."""

    def __init__(self):
        self.lock, self.conns = threading.Lock(), {}

    def register(self, conn):
        with self.lock:
            self.conns.setdefault(conn.user_id, set()).add(conn)

    def unregister(self, conn):
        with self.lock:
            self.conns.get(conn.user_id, set()).discard(conn)

    def publish(self, user_ids, event, data, broadcast):
        with self.lock:
            targets = [c for uid in user_ids for c in self.conns.get(uid, ())]
        for conn in targets:
            conn.event(event, data, broadcast)

    def close_all(self, code=1001):
        with self.lock:
            targets = [c for conns in self.conns.values() for c in conns]
        for conn in targets:
            conn.close(code)


class WebConn:
    def __init__(self, handler, hub, session_of, version, log):
        self.handler, self.hub, self.session_of, self.version, self.log = handler, hub, session_of, version, log
        self.lock, self.seq, self.user_id, self.alive, self.heard = threading.Lock(), 0, "", True, time.monotonic()
        self.connection_id = base64.b32encode(hashlib.sha1(str(id(self)).encode() + str(time.time()).encode())
                                              .digest()[:16]).decode().rstrip("=").lower()

    def _frame(self, opcode, payload):
        size = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([size]) if size < 126 else bytes([126]) + size.to_bytes(2, "big")
                                         if size < 65536 else bytes([127]) + size.to_bytes(8, "big"))
        with self.lock:
            if self.alive:
                try:
                    self.handler.wfile.write(head + payload)
                    self.handler.wfile.flush()
                except OSError:
                    self.alive = False

    def send(self, obj):
        self._frame(TEXT, json.dumps(obj).encode())

    def event(self, name, data, broadcast):
        with self.lock:
            seq, self.seq = self.seq, self.seq + 1
        self.send({"event": name, "data": data, "broadcast": {"omit_users": None, "user_id": "", "channel_id": "",
                                                              "team_id": "", **broadcast}, "seq": seq})

    def close(self, code=1000):
        self._frame(CLOSE, code.to_bytes(2, "big"))
        with self.lock:
            self.alive = False
        try:
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def authenticate(self, token):
        user_id = self.session_of(token)
        if not user_id:
            return False
        self.user_id = user_id
        self.hub.register(self)
        self.event("hello", {"connection_id": self.connection_id, "server_version": self.version},
                   {"user_id": user_id})
        return True

    def _read(self, size):
        data = self.handler.rfile.read(size)
        if len(data) < size:
            raise EOFError
        return data

    def _message(self):
        """The next data message (fragments joined); control frames are handled on the way."""
        parts = []
        while True:
            first, second = self._read(2)
            opcode, size = first & 0x0F, second & 0x7F
            size = int.from_bytes(self._read({126: 2, 127: 8}[size]), "big") if size >= 126 else size
            if not second & 0x80 or size > MAX_MESSAGE:  # clients must mask; no giant messages
                self.close(1002 if not second & 0x80 else 1009)
                raise EOFError
            mask, body = self._read(4), bytearray(self._read(size))
            for i in range(size):
                body[i] ^= mask[i % 4]
            self.heard = time.monotonic()
            if opcode == CLOSE:
                self.close()
                raise EOFError
            if opcode == PING:
                self._frame(PONG, bytes(body))
            elif opcode in (TEXT, CONTINUATION):
                parts.append(bytes(body))
                if first & 0x80:
                    return b"".join(parts)

    def _pinger(self):
        pinged = time.monotonic()
        while self.alive:
            time.sleep(1)
            if time.monotonic() - self.heard > PONG_WAIT:
                self.close(1001)
            elif time.monotonic() - pinged >= PING_INTERVAL:
                self._frame(PING, b"")
                pinged = time.monotonic()

    def serve(self, token):
        """After the 101 response: until the client goes away."""
        threading.Thread(target=self._pinger, daemon=True).start()
        if token:
            self.authenticate(token)
        try:
            while self.alive:
                try:
                    request = json.loads(self._message())
                except ValueError:
                    continue
                seq = request.get("seq", 0) if isinstance(request, dict) else 0
                if not isinstance(request, dict) or not request.get("action"):
                    continue
                if request["action"] == "authentication_challenge":
                    if self.user_id:
                        continue  # already authenticated: ignored, as Mattermost does
                    token = (request.get("data") or {}).get("token", "")
                    ok = isinstance(token, str) and self.authenticate(token)
                    self.send({"status": "OK", "seq_reply": seq} if ok else
                              {"status": "FAIL", "seq_reply": seq, "error": {**NOT_AUTHENTICATED, "status_code": 401}})
                elif not self.user_id:
                    self.send({"status": "FAIL", "seq_reply": seq, "error": {**NOT_AUTHENTICATED, "status_code": 401}})
                else:
                    self.send({"status": "OK", "seq_reply": seq})
        except (EOFError, OSError):
            pass
        finally:
            self.alive = False
            self.hub.unregister(self)


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
