"""Strict HTTP/1.1: ambiguous or malformed requests get the right 4xx and a closed connection,
and the connection state stays sound for well-formed traffic."""
import json
import socket
import time

import pytest

from conftest import raw_exchange, wait_until

CONFIG = """
workers: 1
listeners:
  - name: public
    address: 127.0.0.1:0
    limits: { request_line: 1KiB, header_count: 20, header_bytes: 4KiB }
    timeouts: { header: 500ms, body_idle: 500ms, keepalive: 1s }
admin:
  address: 127.0.0.1:0
clusters:
  - name: app
    endpoints: [UPSTREAM]
routes:
  - match: { path_prefix: / }
    to: { cluster: app }
"""

BAD = [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 400),
    (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(30)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 5000 + b"\r\n\r\n", 431),
    # Input that cannot become HTTP/1.x is refused when its first line ends, not after the
    # header timeout (these used to wait for the rest of a head and get 408).
    (b"GET /\r\n", 400),
    (b"GET / HTTP/1.1 extra\r\n", 400),
    (b"GET / HTTP/1.1\n", 400),
    (b"GET\r\n", 400),
    (b"GET /local HTTP/1.1\rHost: a\r\r", 400),
]


@pytest.fixture
def proxy(upstreams, citadel):
    up = upstreams("a")
    return citadel(CONFIG.replace("UPSTREAM", up.address))


@pytest.mark.parametrize("raw,status", BAD)
def test_malformed_request_gets_status_and_close(proxy, raw, status):
    out = raw_exchange(proxy.port, raw)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:200]
    assert b"Connection: close" in out
    # raw_exchange read until the server closed: a second response never follows.
    assert out.count(b"HTTP/1.1 ") == 1


def test_smuggling_attempt_does_not_reach_upstream_as_second_request(proxy):
    # CL.TE: a front end using Content-Length would forward "0\r\n\r\nGET /admin..." as body.
    attack = (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    out = raw_exchange(proxy.port, attack)
    assert out.startswith(b"HTTP/1.1 400 ")
    assert b"smuggled" not in out


def test_good_request_after_bad_on_new_connection_works(proxy):
    raw_exchange(proxy.port, b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n")
    status, _, _ = proxy.request("GET", "/fine")
    assert status == 200


def test_header_timeout_gives_408(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        t0 = time.monotonic()
        out = s.recv(4096)
        assert out.startswith(b"HTTP/1.1 408 ")
        assert 0.3 < time.monotonic() - t0 < 3
    finally:
        s.close()
    # Counted, and (with an access log) logged: a slowloris is no longer invisible.
    assert proxy.metric("citadel_downstream_protocol_errors_total") == 1


def test_header_timeout_is_in_the_access_log(upstreams, citadel):
    up = upstreams("a")
    c = citadel(CONFIG.replace("UPSTREAM", up.address) + 'access_log: { path: "-" }\n')
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 408 ")
    finally:
        s.close()
    wait_until(lambda: c.access_lines, what="access log line")
    rec = json.loads(c.access_lines[-1])
    assert rec["http.response.status_code"] == 408
    assert rec["citadel.termination"] == "request head timeout"


def test_body_idle_timeout_gives_408(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    try:
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        out = s.recv(4096)
        assert out.startswith(b"HTTP/1.1 408 ")
    finally:
        s.close()


def test_idle_keepalive_connection_is_closed(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    try:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        while True:
            b = s.recv(65536)
            if not b:
                break
        assert 0.5 < time.monotonic() - t0 < 4
    finally:
        s.close()


def test_protocol_errors_are_counted(proxy):
    raw_exchange(proxy.port, b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n")
    assert proxy.metric("citadel_downstream_protocol_errors_total") >= 1


def test_request_line_that_cannot_be_http1_is_refused_before_the_head_timeout(upstreams, citadel):
    # A header timeout far longer than the test: only an immediate answer passes.
    up = upstreams("a")
    c = citadel(CONFIG.replace("UPSTREAM", up.address).replace("header: 500ms", "header: 30s"))
    for raw in (b"GET /\r\n", b"GET /index.html\r\n\r\n"):
        t0 = time.monotonic()
        out = raw_exchange(c.port, raw, timeout=10)
        assert out.startswith(b"HTTP/1.1 400 "), out[:100]
        assert time.monotonic() - t0 < 2
    # The same bytes in pieces: refused once the line ends.
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    try:
        s.sendall(b"GET /")
        time.sleep(0.2)
        s.sendall(b"x\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    finally:
        s.close()


def test_chunk_sizes_with_leading_zeros_are_valid(proxy):
    body = b"0000000000000000005\r\nhello\r\n000\r\n\r\n"
    out = raw_exchange(proxy.port, b"POST /sink HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert b'"received": 5' in out


def test_query_may_carry_characters_browsers_send_raw_but_the_path_may_not(proxy):
    out = raw_exchange(proxy.port, b"GET /search?q=a|b^{c}`d HTTP/1.1\r\nHost: a\r\n"
                                   b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 "), out[:100]
    assert b"q=a|b^{c}`d" in out  # the upstream's echo: the query as sent
    out = raw_exchange(proxy.port, b"GET /a|b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:100]
