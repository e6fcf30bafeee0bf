"""Trailer fields of chunked messages pass through Citadel both ways, minus the fields a proxy
must not forward from a trailer section (framing, cookies, authentication, ...)."""
import json
import socket

from conftest import config_head


def config(up):
    return config_head(workers=1, admin=False) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - match: {{ path_prefix: / }}
        to: {{ cluster: app }}
    """


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        got = self.sock.recv(65536)
        assert got, "connection closed early; have %r" % self.buf
        self.buf += got

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def fields(self):
        """(name, value) pairs up to the empty line that ends a head or a trailer section."""
        out = []
        while True:
            line = self.line()
            if not line:
                return out
            name, _, value = line.decode().partition(":")
            out.append((name, value.strip()))

    def head(self):
        status = self.line()
        return status, [(name.lower(), value) for name, value in self.fields()]

    def chunked(self):
        body = b""
        while True:
            size = int(self.line().split(b";")[0], 16)
            if size == 0:
                return body, self.fields()
            body += self.exactly(size)
            assert self.exactly(2) == b"\r\n"


def test_response_trailers_are_forwarded(upstreams, citadel):
    up = upstreams("a")
    c = citadel(config(up))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    r = Reader(s)
    for n in (2, 3):  # twice on one connection: the framing stays sound after trailers
        s.sendall(b"GET /trailers?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        status, headers = r.head()
        assert status == b"HTTP/1.1 200 OK"
        assert ("transfer-encoding", "chunked") in headers
        assert ("trailer", "X-Checksum, Server-Timing") in headers
        body, trailers = r.chunked()
        assert body == b"part" * n
        assert trailers == [("X-Checksum", "sha256=abc"), ("Server-Timing", "app;dur=%d" % n)]
    s.close()


def test_an_http10_client_gets_the_body_without_trailers(upstreams, citadel):
    up = upstreams("a")
    c = citadel(config(up))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    s.sendall(b"GET /trailers?n=2 HTTP/1.0\r\nHost: t\r\n\r\n")
    data = b""
    while True:
        got = s.recv(65536)
        if not got:
            break
        data += got
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"chunked" not in head.lower()
    assert body == b"partpart"


def test_request_trailers_are_forwarded(upstreams, citadel):
    up = upstreams("a")
    c = citadel(config(up))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    s.sendall(b"POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n0\r\nX-Digest: sha-256=:d1:\r\nAuthorization: Bearer x\r\n"
              b"Content-Type: text/html\r\n\r\n")
    r = Reader(s)
    status, headers = r.head()
    assert status == b"HTTP/1.1 200 OK"
    length = int(dict(headers)["content-length"])
    got = json.loads(r.exactly(length))
    assert got["received"] == 5
    assert got["trailers"] == [["X-Digest", "sha-256=:d1:"]]
    # Without trailers the upstream sees none.
    s.sendall(b"POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"2\r\nhi\r\n0\r\n\r\n")
    status, headers = r.head()
    got = json.loads(r.exactly(int(dict(headers)["content-length"])))
    assert got["received"] == 2 and got["trailers"] == []
    s.close()
