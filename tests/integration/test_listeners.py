"""Listening addresses: one address, one owner. A second process on a port Citadel holds, or a
port another process holds, is refused; the admin listener warns when it is not on loopback."""
import http.client
import os
import re
import socket
import subprocess
import textwrap
import time

import pytest

from conftest import CITADEL, wait_until


def respond_config(body, port=0, admin="127.0.0.1:0", extra_listener=""):
    return f"""
    workers: 2
    listeners:
      - name: public
        address: 127.0.0.1:{port}
{extra_listener}
    admin:
      address: {admin}
    access_log: off
    routes:
      - to: {{ respond: {{ status: 200, body: "{body}" }} }}
    """


def reuseport_holder():
    """A listening socket with SO_REUSEPORT, as a second Citadel would open: the kernel lets any
    process of the same user join its group."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def run_expecting_exit(tmp_path, name, config, timeout=10):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(config))
    # An old Citadel starts and serves: the timeout ends it and the test fails.
    return subprocess.run([CITADEL, "-c", path], capture_output=True, text=True, timeout=timeout)


def fresh_connection_bodies(port, n):
    """`n` requests, each on a new connection (SO_REUSEPORT spreads connections, not requests)."""
    bodies = []
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            c.request("GET", "/", headers={"Connection": "close"})
            bodies.append(c.getresponse().read())
        finally:
            c.close()
    return bodies


def test_second_citadel_on_the_same_port_exits_and_the_first_keeps_every_connection(
        citadel, tmp_path):
    first = citadel(respond_config("first"))
    port = first.port
    second = run_expecting_exit(tmp_path, "second.yaml", respond_config("second", port=port))
    assert second.returncode != 0
    assert "listeners: public: cannot listen on 127.0.0.1:%d: address already in use by another " \
           "process" % port in second.stderr, second.stderr
    assert re.search(r"second\.yaml:\d+: listeners", second.stderr), second.stderr
    assert fresh_connection_bodies(port, 40) == [b"first"] * 40


def test_admin_port_held_by_another_process_fails_the_start(tmp_path):
    holder = reuseport_holder()
    try:
        port = holder.getsockname()[1]
        r = run_expecting_exit(tmp_path, "c.yaml", respond_config("x", admin="127.0.0.1:%d" % port))
        assert r.returncode != 0
        assert re.search(r"c\.yaml:\d+: admin\.address: cannot listen on 127\.0\.0\.1:%d: address "
                         r"already in use by another process" % port, r.stderr), r.stderr
    finally:
        holder.close()


def test_reload_adding_a_listener_on_a_port_another_process_holds_is_refused(citadel):
    holder = reuseport_holder()
    try:
        port = holder.getsockname()[1]
        c = citadel(respond_config("old"))
        c.write_config(respond_config("new", extra_listener=f"""
      - name: extra
        address: 127.0.0.1:{port}"""))
        status, text = c.admin("POST", "/config/reload")
        assert status == 400, text
        assert re.search(r"citadel\.yaml:\d+: listeners: extra: cannot listen on 127\.0\.0\.1:%d: "
                         r"address already in use by another process" % port, text), text
        assert c.request("GET", "/")[2] == b"old"
        _, cfg = c.admin("GET", "/config")
        assert '"extra"' not in cfg.split('"config":')[0]
        # Citadel did not join the holder's port: every connection there reaches the holder.
        holder.settimeout(5)
        for _ in range(8):
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                conn, _ = holder.accept()
                conn.close()
    finally:
        holder.close()


def test_reload_renaming_a_listener_keeps_its_address(citadel):
    # The address is Citadel's own: no probe refuses it.
    c = citadel(respond_config("old"))
    port = c.port
    c.write_config(respond_config("new", port=port).replace("name: public", "name: renamed"))
    status, text = c.admin("POST", "/config/reload")
    assert status == 200, text
    wait_until(lambda: fresh_connection_bodies(port, 1) == [b"new"], what="the new config")


@pytest.mark.parametrize("name", ["renamed", "public"])
def test_reload_fixing_the_port_resets_no_waiting_connection(citadel, name):
    # Connections made across the reload land in the sockets' accept queues: the listener, renamed
    # or given the port it got from port 0, keeps its sockets, so every one is answered.
    c = citadel(respond_config("old"))
    port = c.port
    c.write_config(respond_config("new", port=port).replace("name: public", f"name: {name}"))
    clients = []
    try:
        for i in range(200):
            if i == 50:
                status, text = c.admin("POST", "/config/reload")
                assert status == 200, text
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            clients.append(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for s in clients:
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200") and data.endswith((b"old", b"new")), data
    finally:
        for s in clients:
            s.close()
    wait_until(lambda: any("config reloaded" in l for l in c.snapshot_lines()), what="the reload")
    lines = c.snapshot_lines()
    assert not any("listener public closed" in l for l in lines), "\n".join(lines)


def test_admin_off_loopback_warns(citadel):
    c = citadel(respond_config("x", admin="0.0.0.0:0"))
    lines = c.snapshot_lines()
    assert any("[warn]" in l and "admin listener on 0.0.0.0:" in l and "reachable from other hosts"
               in l for l in lines), "\n".join(lines)


def test_admin_on_loopback_does_not_warn(citadel):
    c = citadel(respond_config("x"))
    time.sleep(0.1)
    lines = c.snapshot_lines()
    assert any("admin listening on 127.0.0.1:" in l for l in lines), "\n".join(lines)
    assert not any("reachable from other hosts" in l for l in lines), "\n".join(lines)
