"""Downstream connection limits: `limits.connections` and running out of file descriptors.

In both cases Citadel stops accepting and leaves further clients in the kernel's accept queue
(nothing is refused or reset), then serves them once connections close.
"""
import socket

from conftest import config_head

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
