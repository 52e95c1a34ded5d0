"""A real HTTP server on 127.0.0.1 (and ::1 when available) for the `http` node's tests.

The standard library's threaded server, speaking HTTP/1.1 with keep-alive, records every
request it receives (so a test can check that a refused request never arrived) and answers
by path:

    /json                 {"hello": "world", "n": 1} as application/json
    /echo                 the request (method, path, query, headers, body) as JSON
    /text                 text/plain in UTF-8
    /type?ct=…&body=…     the body with that content type
    /status/N?size=K      status N with the text body "status N" (or K times "e")
    /flaky/NAME/K/S       status S for the first K requests to NAME, then 200 {"ok": true}
    /slow?s=…             answers after s seconds (default 5)
    /big?n=…&chunked=1    n bytes of "x", with a Content-Length or chunked
    /headers              repeated Set-Cookie and X-Multi headers, mixed-case names
    /gzip                 gzip-compressed JSON
    /redirect?to=…&status=302   a redirect to `to`
    /loop/K               a redirect to /loop/K+1, for ever
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.counters: dict[str, int] = {}
        self.stop = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.counters.clear()

    def add(self, entry: dict) -> None:
        with self.lock:
            self.requests.append(entry)

    def count(self, name: str) -> int:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1
            return self.counters[name]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    recorder: Recorder  # set on a subclass per server

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def handle_any(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        entry = {"method": self.command, "path": parts.path, "query": query,
                 "headers": {k.lower(): v for k, v in self.headers.items()},
                 "body": body.decode("utf-8", "replace"), "client": self.client_address[:2],
                 "sni": getattr(self.connection, "astron_sni", None)}
        self.recorder.add(entry)
        segments = [s for s in parts.path.split("/") if s]
        route = segments[0] if segments else ""
        if route == "json":
            return self.reply(200, json.dumps({"hello": "world", "n": 1}), "application/json")
        if route == "echo":
            return self.reply(200, json.dumps(entry), "application/json")
        if route == "text":
            return self.reply(200, "plain text ✓", "text/plain; charset=utf-8")
        if route == "type":
            return self.reply(200, query.get("body", ""), query.get("ct", "text/plain"))
        if route == "status":
            code = int(segments[1])
            text = "e" * int(query["size"]) if "size" in query else f"status {code}"
            return self.reply(code, text, "text/plain")
        if route == "flaky":
            name, failures, status = segments[1], int(segments[2]), int(segments[3])
            if self.recorder.count(name) <= failures:
                return self.reply(status, f"failure {status}", "text/plain")
            return self.reply(200, json.dumps({"ok": True}), "application/json")
        if route == "slow":
            self.recorder.stop.wait(float(query.get("s", 5)))
            return self.reply(200, "late", "text/plain")
        if route == "big":
            return self.big(int(query["n"]), query.get("chunked") == "1")
        if route == "headers":
            self.send_response(200)
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
            self.send_header("X-Multi", "one")
            self.send_header("x-multi", "two")
            self.send_header("X-Mixed-Case", "Value")
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return None
        if route == "gzip":
            data = gzip.compress(json.dumps({"zipped": True}).encode())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        if route == "redirect":
            return self.redirect(int(query.get("status", 302)), query["to"])
        if route == "loop":
            return self.redirect(302, f"/loop/{int(segments[1]) + 1}")
        return self.reply(404, "not found", "text/plain")

    def reply(self, status: int, text: str, content_type: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def big(self, size: int, chunked: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"x" * 65536
        sent = 0
        with contextlib.suppress(OSError):  # the client may hang up once it has seen enough
            while sent < size:
                piece = block[:min(len(block), size - sent)]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # parallel nodes connect at once; the default backlog is 5

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client hung up (a timeout, a refused size): expected, not noise
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class LocalServers:
    """Servers on 127.0.0.1 (and ::1) sharing one recorder; optionally one with TLS."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.recorder = Recorder()
        handler = type("BoundHandler", (Handler,), {"recorder": self.recorder})
        self.servers = [_Server(("127.0.0.1", 0), handler)]
        with contextlib.suppress(OSError):  # no IPv6 on this machine
            self.servers.append(_Server6(("::1", 0), handler))
        if tls is not None:
            for server in self.servers:
                server.socket = tls.wrap_socket(server.socket, server_side=True)
        self.port = self.servers[0].server_address[1]
        self.port6 = self.servers[1].server_address[1] if len(self.servers) > 1 else None
        self.threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True)
                        for s in self.servers]
        for thread in self.threads:
            thread.start()

    @property
    def requests(self) -> list[dict]:
        with self.recorder.lock:
            return list(self.recorder.requests)

    def url(self, path: str = "/", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.recorder.stop.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
