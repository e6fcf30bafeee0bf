"""Streaming through Citadel: WebSocket tunnels, server-sent events, huge bodies both ways with
bounded memory, and slow readers that must not make Citadel buffer."""
import base64
import os
import socket
import threading
import time

from conftest import config_head, wait_until
from upstream import make_ws_frame, read_ws_frame


def cfg(up):
    return config_head(workers=1, listener="        limits: { body: 2GiB }") + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
        timeouts: {{ response: 30s, idle: 30s }}
    routes:
      - match: {{ path_prefix: / }}
        upgrades: [websocket]
        to: {{ cluster: app }}
    """


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(4096)
        assert b, "closed before the response head"
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def test_websocket_echo_session(upstreams, citadel):
    up = upstreams("ws")
    c = citadel(cfg(up))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"Upgrade: websocket" in head or b"upgrade: websocket" in head.lower()
        f = s.makefile("rb")
        assert rest == b""
        for msg in [b"hello", b"x" * 1000, b"y" * 70000]:
            s.sendall(make_ws_frame(1, msg))
            opcode, payload = read_ws_frame(f)
            assert opcode == 1 and payload == msg
        s.sendall(make_ws_frame(8, b""))
        opcode, _ = read_ws_frame(f)
        assert opcode == 8
    finally:
        s.close()


def test_sse_events_arrive_as_they_are_sent(upstreams, citadel):
    up = upstreams("sse")
    c = citadel(cfg(up))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    try:
        s.sendall(b"GET /sse?n=4&ms=300 HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200")
        arrivals = []
        buf = rest
        t0 = time.monotonic()
        while len(arrivals) < 4 and time.monotonic() - t0 < 5:
            while b"\n\n" in buf:
                ev, _, buf = buf.partition(b"\n\n")
                if b"data: event" in ev:
                    arrivals.append(time.monotonic() - t0)
            if len(arrivals) < 4:
                buf += s.recv(4096)
        assert len(arrivals) == 4
        # Each event is flushed on arrival: the first long before the stream ends.
        assert arrivals[0] < 0.25, arrivals
        assert arrivals[3] - arrivals[0] > 0.6, arrivals
    finally:
        s.close()


def _watch_rss(c, stop, samples):
    while not stop.is_set():
        samples.append(c.rss_kb())
        time.sleep(0.05)


def test_1gib_chunked_upload_and_download_stream_with_bounded_rss(upstreams, citadel):
    up = upstreams("big")
    c = citadel(cfg(up))
    base = c.rss_kb()
    samples = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_rss, args=(c, stop, samples), daemon=True)
    watcher.start()
    total = 1 << 30
    try:
        # Upload: 1 GiB as chunked, read by the upstream as it arrives.
        s = socket.create_connection(("127.0.0.1", c.port), timeout=60)
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        block = b"z" * (1 << 20)
        chunk = b"%x\r\n" % len(block) + block + b"\r\n"
        for _ in range(total // len(block)):
            s.sendall(chunk)
        s.sendall(b"0\r\n\r\n")
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200")
        body = rest
        while b"}" not in body:
            body += s.recv(4096)
        assert b'"received": %d' % total in body
        s.close()
        # Download: 1 GiB with Content-Length.
        s = socket.create_connection(("127.0.0.1", c.port), timeout=60)
        s.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % total)
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200")
        got = len(rest)
        while got < total:
            b = s.recv(1 << 20)
            assert b
            got += len(b)
        assert got == total
        s.close()
    finally:
        stop.set()
        watcher.join()
    peak = max(samples) - base
    assert peak < 64 * 1024, "RSS grew by %d KiB while streaming 1 GiB" % peak


def test_slow_reader_does_not_grow_rss(upstreams, citadel):
    up = upstreams("slow")
    c = citadel(cfg(up))
    base = c.rss_kb()
    s = socket.create_connection(("127.0.0.1", c.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        size = 256 << 20
        s.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % size)
        head, rest = read_head(s)
        got = len(rest)
        # Read slowly for a while: the upstream could send 256 MiB much faster than this.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            got += len(s.recv(16384))
            time.sleep(0.01)
        grown = c.rss_kb() - base
        assert grown < 16 * 1024, "RSS grew by %d KiB behind a slow reader" % grown
        assert got < size // 4  # the reader really was slow
    finally:
        s.close()


def test_slow_upstream_does_not_make_citadel_buffer_an_upload(upstreams, citadel):
    up = upstreams("slowsink")
    c = citadel(cfg(up))
    base = c.rss_kb()
    size = 256 << 20
    s = socket.create_connection(("127.0.0.1", c.port), timeout=30)
    sent = [0]

    def send():
        try:
            s.sendall(b"POST /slowsink HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
            block = b"u" * (1 << 20)
            for _ in range(size // len(block)):
                s.sendall(block)
                sent[0] += len(block)
        except OSError:
            pass
    t = threading.Thread(target=send, daemon=True)
    t.start()
    try:
        peak = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:
            peak = max(peak, c.rss_kb() - base)
            time.sleep(0.05)
        # The client could push far more than the upstream takes (about 6 MiB/s): what it has
        # sent is bounded by socket buffers and Citadel's own watermarks, and so is Citadel's RSS.
        assert sent[0] < 64 << 20, sent[0]
        assert peak < 16 * 1024, "RSS grew by %d KiB behind a slow upstream" % peak
    finally:
        s.close()
        t.join(timeout=5)


def _tunnel_upstream(close_first, seen_eof):
    """A raw upstream on 127.0.0.1: answers 101, echoes what arrives; closes 0.3 s after the
    first echo when `close_first`, else waits for the client's half-close (recorded in
    `seen_eof`) and then closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(5)

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        c.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += c.recv(4096)
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\n\r\n")
            rest = data.split(b"\r\n\r\n", 1)[1] or c.recv(4096)
            c.sendall(rest)
            if close_first:
                time.sleep(0.3)
            else:
                while c.recv(4096):
                    pass
                seen_eof.append(True)
        except OSError:
            pass
        finally:
            c.close()
            srv.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def _tunnel_cfg(port):
    return config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [127.0.0.1:{port}]
    routes:
      - upgrades: [websocket]
        to: {{ cluster: app }}
    """


def _open_tunnel(c):
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nPING")
    got = b""
    while not got.endswith(b"PING"):
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    assert got.startswith(b"HTTP/1.1 101 ")
    return s


def test_tunnel_passes_the_upstreams_close_to_the_client(citadel):
    # Before: an upstream that closed a WebSocket left the client waiting forever (and the
    # connection open in Citadel) when nothing was left to write.
    c = citadel(_tunnel_cfg(_tunnel_upstream(True, [])))
    s = _open_tunnel(c)
    try:
        s.settimeout(3)
        assert s.recv(4096) == b"", "the client never saw the upstream's close"
    finally:
        s.close()
    wait_until(lambda: c.metric("citadel_downstream_connections_active") == 0, timeout=5,
               what="the tunnel's connection to close")


def test_tunnel_passes_the_clients_half_close_to_the_upstream(citadel):
    seen = []
    c = citadel(_tunnel_cfg(_tunnel_upstream(False, seen)))
    s = _open_tunnel(c)
    try:
        s.shutdown(socket.SHUT_WR)
        wait_until(lambda: seen, timeout=3, what="the upstream to see the client's half-close")
        s.settimeout(3)
        assert s.recv(4096) == b""  # and the upstream's close comes back
    finally:
        s.close()


def test_a_slow_client_does_not_run_out_the_upstreams_idle_timeout(upstreams, citadel):
    # Before: while a slow client made Citadel stop reading the upstream, the upstream's idle
    # clock kept running: the download was cut off and the healthy endpoint counted as failed.
    up = upstreams("big")
    c = citadel(config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
        timeouts: {{ response: 5s, idle: 300ms }}
        outlier: {{ consecutive_failures: 1 }}
    routes:
      - to: {{ cluster: app }}
    """)
    total = 24 << 20
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % total)
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200")
        time.sleep(1.2)  # four idle timeouts' worth of not reading
        got = len(rest)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        assert got == total, "%d of %d bytes" % (got, total)
    finally:
        s.close()
    assert (c.metric('citadel_upstream_ejections_total{cluster="app"}') or 0) == 0
