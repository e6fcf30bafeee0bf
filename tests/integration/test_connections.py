"""Downstream connection limits: `limits.connections`, running out of file descriptors, and the
bound on what a connection may have answered but not yet written (pipelining clients).

At the connection limits Citadel stops accepting and leaves further clients in the kernel's
accept queue (nothing is refused or reset), then serves them once connections close.
"""
import socket
import time

from conftest import SLOWDOWN, config_head

REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


def config(limit=None):
    limits = "        limits: { connections: %d }" % limit if limit else ""
    return config_head(workers=1, listener=limits) + f"""
    routes:
      - to: {{ respond: {{ status: 200, body: "ok" }} }}
    """


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(REQUEST)
    return s


def answered(s, timeout):
    """True when a whole response to REQUEST arrives within `timeout` seconds."""
    s.settimeout(timeout)
    got = b""
    try:
        while not (b"\r\n\r\n" in got and got.endswith(b"ok")):
            chunk = s.recv(4096)
            if not chunk:
                return False
            got += chunk
    except socket.timeout:
        return False
    assert got.startswith(b"HTTP/1.1 200"), got
    return True


def paused(c, reason):
    return c.metric('citadel_downstream_accept_paused_total{reason="%s"}' % reason) or 0


def test_connection_limit_queues_clients_until_one_closes(citadel):
    c = citadel(config(limit=2))
    first, second = connect(c.port), connect(c.port)
    assert answered(first, 5) and answered(second, 5)
    third = connect(c.port)  # the handshake completes in the kernel; Citadel does not accept
    assert not answered(third, 0.5)
    assert paused(c, "connection_limit") >= 1
    first.close()
    assert answered(third, 5)
    third.sendall(REQUEST)  # a normal keep-alive connection from then on
    assert answered(third, 5)
    second.sendall(REQUEST)
    assert answered(second, 5)
    second.close()
    third.close()


def test_connection_limit_follows_reload(citadel):
    c = citadel(config(limit=1))
    first = connect(c.port)
    assert answered(first, 5)
    second = connect(c.port)
    assert not answered(second, 0.5)
    c.write_config(config(limit=3))
    assert c.admin("POST", "/config/reload")[0] == 200
    assert answered(second, 5)  # the raised limit lets the waiting client in
    first.close()
    second.close()


def test_out_of_descriptors_pauses_accepting_then_resumes(citadel):
    # A descriptor limit low enough to run out with a few dozen clients.
    c = citadel(config(), wrapper=["prlimit", "--nofile=48:48"])
    # UBSan's vptr check probes memory through a pipe; with no descriptor left the probe fails
    # and a sound virtual call is reported ("invalid vptr", "<memory cannot be printed>").
    c.ignore_failed_memory_probes = True
    c.wait_for(r"file descriptor limit: 48")
    clients, waiting = [], []
    for _ in range(60):
        s = connect(c.port)
        (clients if answered(s, 0.3) else waiting).append(s)
        if len(waiting) >= 3:
            break
    assert clients, "no client was served"
    assert len(waiting) >= 3, "the descriptor limit was never reached"
    c.wait_for(r"cannot accept \(Too many open files\)")
    # Citadel keeps serving the connections it has.
    clients[0].sendall(REQUEST)
    assert answered(clients[0], 5)
    # Descriptors come back: the queued clients are served without a new arrival to wake it.
    for s in clients:
        s.close()
    for s in waiting:
        assert answered(s, 5)
        s.close()
    assert paused(c, "no_descriptors") >= 1  # the admin listener needs a descriptor too


def _pipeline_without_reading(port, path, conns, seconds):
    """`conns` connections that pipeline GETs for `path` as fast as the server takes them and
    never read a byte. Returns the open sockets (the caller closes them)."""
    burst = (b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode()) * 512
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the client reads nothing
        s.setblocking(False)
        socks.append(s)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        progressed = False
        for s in socks:
            try:
                s.send(burst)
                progressed = True
            except BlockingIOError:
                pass
        if not progressed:
            time.sleep(0.02)
    return socks


def test_pipelining_client_that_never_reads_has_bounded_output(citadel):
    # Before: twenty such connections to a `respond` route grew RSS by over a GiB in seconds,
    # because each pipelined request was answered into an output buffer nobody drained.
    c = citadel(config())
    base = c.rss_kb()
    socks = _pipeline_without_reading(c.port, "/x", conns=20, seconds=4)
    try:
        grown_mb = (c.rss_kb() - base) / 1024
        assert grown_mb < 48, "RSS grew by %.0f MiB" % grown_mb
        # Citadel still serves everyone else (the flooding connections get turns of 64
        # requests; a sanitizer build works through their backlog much more slowly).
        s = connect(c.port)
        assert answered(s, 5 * SLOWDOWN)
        s.close()
    finally:
        for s in socks:
            s.close()


def test_pipelining_to_a_cluster_reads_no_further_ahead_than_the_bound(citadel, upstreams):
    # Before: between two proxied requests the connection read another 16 KiB chunk while the
    # next request was already buffered, so one client that pipelined faster than the upstream
    # answered grew the input by a chunk per request (475 MB in 3 s). Memory now stays bounded
    # and the kernel's buffers push back on the client.
    up = upstreams("app")
    c = citadel(config_head() + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - to: {{ cluster: app }}
    """)
    base = c.rss_kb()
    socks = _pipeline_without_reading(c.port, "/x", conns=2, seconds=4)
    try:
        grown_mb = (c.rss_kb() - base) / 1024
        assert grown_mb < 8, "RSS grew by %.0f MiB" % grown_mb
        assert c.request("GET", "/other", timeout=5)[0] == 200
    finally:
        for s in socks:
            s.close()


def test_pipelining_to_admin_healthz_has_bounded_output(citadel):
    c = citadel(config())
    base = c.rss_kb()
    socks = _pipeline_without_reading(c.admin_port, "/healthz", conns=2, seconds=4)
    try:
        grown_mb = (c.rss_kb() - base) / 1024
        # Before: about 7 MiB a second per connection; now the output bound (256 KiB).
        assert grown_mb < 8, "RSS grew by %.0f MiB" % grown_mb
        assert c.admin("GET", "/healthz")[0] == 200
    finally:
        for s in socks:
            s.close()


def test_pipelined_responses_drain_once_the_client_reads(citadel):
    # The bound pauses reading; it must resume when the client catches up, and nothing is lost.
    c = citadel(config())
    n = 3000
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    try:
        s.sendall(REQUEST * n)
        got = b""
        deadline = time.monotonic() + 20
        while got.count(b"HTTP/1.1 200") < n and time.monotonic() < deadline:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        assert got.count(b"HTTP/1.1 200") == n
    finally:
        s.close()


def test_half_closed_pipelining_client_gets_every_response(citadel):
    c = citadel(config())
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    try:
        s.sendall(REQUEST * 200)
        s.shutdown(socket.SHUT_WR)
        got = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        assert got.count(b"HTTP/1.1 200") == 200
    finally:
        s.close()
