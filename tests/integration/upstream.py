#!/usr/bin/env python3
"""A test upstream with the behaviours the integration tests need.

Run as a process: `upstream.py NAME [PORT [HOST]]`. It binds HOST (127.0.0.1 by default; another
loopback address such as 127.0.0.2 or ::1 for the DNS tests) and PORT (0 by default), prints
`PORT <n>` on stdout, and serves until killed. Behaviour is chosen by path:

  /health              200, or 503 after POST /health/down (and 200 again after /health/up)
  /slow?ms=N           answers after N milliseconds
  /chunked?n=N&size=S  N chunks of S bytes, Transfer-Encoding: chunked
  /bytes?n=N           N bytes of body (streamed, Content-Length)
                       (both take h=Name:Value, repeated: response fields to add)
  /sse?n=N&ms=M        N server-sent events, one every M ms
  /ws                  WebSocket echo
  /status/N            answers status N
  /early               103 Early Hints, then 200
  /trailers?n=N        N chunks, then trailer fields (some that a proxy must not forward)
  POST /sink           reads the whole body (chunked or Content-Length), answers its size
                       and the trailer fields it ended with
  POST /slowsink       reads a Content-Length body at 64 KiB per 10 ms
  anything else        200, JSON echo of name, method, path and headers (over TLS also the
                       connection's "tls": version, sni, client certificate CN, resumed)

TLS: with UPSTREAM_TLS_CERT and UPSTREAM_TLS_KEY (PEM files) in the environment it serves https;
UPSTREAM_TLS_CLIENT_CA (a PEM bundle) makes it require a client certificate signed by it.
"""
import base64
import hashlib
import json
import os
import socket
import ssl
import socketserver
import struct
import sys
import threading
import time
import http.server
from urllib.parse import urlsplit, parse_qs

NAME = "up"
PORT = 0
STATE = {"healthy": True, "sni": None}
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are separate writes

    def log_message(self, *args):
        pass

    def extra_headers(self, q):
        for h in q.get("h", []):
            name, _, value = h.partition(":")
            self.send_header(name, value)

    def send_body(self, status, body, ctype="text/plain"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream", NAME)
        # Head and body in one write (end_headers() would send the head alone), as real servers
        # send small responses: a test that kills this process under load must not catch it
        # between the two, which would truncate a response no proxy could retry.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        total = 0
        self.trailers = []
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        line = self.rfile.readline(1024)
                        if line in (b"\r\n", b"\n", b""):
                            return total
                        name, _, value = line.decode("latin-1").partition(":")
                        self.trailers.append([name, value.strip()])
                left = size
                while left:
                    got = self.rfile.read(min(left, 1 << 20))
                    if not got:
                        raise ConnectionError("eof in chunk")
                    left -= len(got)
                    total += len(got)
                self.rfile.read(2)
        n = int(self.headers.get("Content-Length", "0"))
        left = n
        while left:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                raise ConnectionError("eof in body")
            left -= len(got)
            total += len(got)
        return total

    def echo(self):
        u = urlsplit(self.path)
        info = {
            "name": NAME,
            "method": self.command,
            "path": u.path,
            "query": u.query,
            "target": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
        }
        if isinstance(self.connection, ssl.SSLSocket):
            peer = self.connection.getpeercert() or {}
            subject = dict(x[0] for x in peer.get("subject", ()))
            info["tls"] = {"version": self.connection.version(), "sni": STATE["sni"],
                           "client_cn": subject.get("commonName"),
                           "resumed": self.connection.session_reused,
                           "alpn": self.connection.selected_alpn_protocol()}
        self.send_body(200, json.dumps(info), "application/json")

    def do_GET(self):
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        p = u.path
        if p == "/health":
            if STATE["healthy"]:
                self.send_body(200, "ok\n")
            else:
                self.send_body(503, "down\n")
        elif p == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000.0)
            self.send_body(200, "slow %s\n" % NAME)
        elif p == "/trailers":
            n = int(q.get("n", ["2"])[0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum, Server-Timing")
            self.end_headers()
            for i in range(n):
                self.wfile.write(b"4\r\npart\r\n")
            self.wfile.write(b"0\r\nX-Checksum: sha256=abc\r\nServer-Timing: app;dur=%d\r\n"
                             b"Set-Cookie: s=1\r\nContent-Length: 99\r\n\r\n" % n)
        elif p == "/chunked":
            n = int(q.get("n", ["3"])[0])
            size = int(q.get("size", ["10"])[0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Upstream", NAME)
            self.extra_headers(q)
            self.end_headers()
            chunk = b"x" * size
            for _ in range(n):
                self.wfile.write(b"%x\r\n%s\r\n" % (size, chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif p == "/bytes":
            n = int(q.get("n", ["1000"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.send_header("X-Upstream", NAME)
            self.extra_headers(q)
            self.end_headers()
            if self.command == "HEAD":
                return
            block = b"y" * (1 << 20)
            left = n
            try:
                while left:
                    k = min(left, len(block))
                    self.wfile.write(block[:k])
                    left -= k
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif p == "/sse":
            n = int(q.get("n", ["3"])[0])
            ms = int(q.get("ms", ["200"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for i in range(n):
                ev = b"data: event %d %f\n\n" % (i, time.time())
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                self.wfile.flush()
                time.sleep(ms / 1000.0)
            self.wfile.write(b"0\r\n\r\n")
        elif p == "/ws":
            self.websocket()
        elif p == "/early":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n")
            self.wfile.flush()
            time.sleep(0.05)
            self.send_body(200, "final\n")
        elif p.startswith("/status/"):
            self.send_body(int(p.split("/")[2]), "status\n")
        else:
            self.echo()

    do_HEAD = do_GET
    do_DELETE = do_GET
    do_TRACE = do_GET

    def do_POST(self):
        p = urlsplit(self.path).path
        if p == "/health/down":
            self.read_body()
            STATE["healthy"] = False
            self.send_body(200, "down\n")
        elif p == "/health/up":
            self.read_body()
            STATE["healthy"] = True
            self.send_body(200, "up\n")
        elif p == "/slowsink":
            # Reads 64 KiB every 10 ms: a slow consumer of uploads.
            n = int(self.headers.get("Content-Length", "0"))
            left = n
            try:
                while left:
                    got = self.rfile.read(min(left, 65536))
                    if not got:
                        return
                    left -= len(got)
                    time.sleep(0.01)
            except (ConnectionError, OSError):
                return
            self.send_body(200, json.dumps({"name": NAME, "received": n}), "application/json")
        else:
            n = self.read_body()
            self.send_body(200, json.dumps({"name": NAME, "received": n, "path": p,
                                            "trailers": self.trailers}),
                           "application/json")

    do_PUT = do_POST

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            frame = read_ws_frame(self.rfile)
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 8:
                self.wfile.write(make_ws_frame(8, payload, mask=False))
                self.wfile.flush()
                return
            self.wfile.write(make_ws_frame(opcode, payload, mask=False))
            self.wfile.flush()


def read_ws_frame(f):
    hdr = f.read(2)
    if len(hdr) < 2:
        return None
    opcode = hdr[0] & 0x0F
    masked = hdr[1] & 0x80
    n = hdr[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", f.read(8))[0]
    mask = f.read(4) if masked else b"\0\0\0\0"
    data = bytearray(f.read(n))
    for i in range(len(data)):
        data[i] ^= mask[i % 4]
    return opcode, bytes(data)


def make_ws_frame(opcode, payload, mask=True):
    b0 = 0x80 | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return hdr + payload
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return hdr + key + masked


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    global NAME, PORT
    NAME = sys.argv[1] if len(sys.argv) > 1 else "up"
    PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    if ":" in host:
        Server.address_family = socket.AF_INET6
    srv = Server((host, PORT), Handler)
    cert = os.environ.get("UPSTREAM_TLS_CERT")
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, os.environ["UPSTREAM_TLS_KEY"])
        ctx.set_alpn_protocols(["http/1.1"])
        client_ca = os.environ.get("UPSTREAM_TLS_CLIENT_CA")
        if client_ca:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED

        def on_sni(sslobj, name, _ctx):
            STATE["sni"] = name
        ctx.sni_callback = on_sni
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
