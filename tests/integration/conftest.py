"""Fixtures for black-box tests: the real citadel binary and real upstream processes.

Everything binds 127.0.0.1 with ports chosen by the OS; every wait is bounded; every process a
test starts is stopped when the test ends.
"""
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CITADEL = os.environ.get("CITADEL_BIN", os.path.join(ROOT, "build", "release", "citadel"))
# A sanitizer build (build/asan, build/tsan) runs 5-15 times slower: waits for work the binary
# must do (not for timers it keeps) are stretched by this.
SLOWDOWN = 4 if re.search(r"/build/(asan|tsan)/", CITADEL) else 1
PYTHON = "/usr/bin/python3"


def free_port():
    """A loopback port free now, for a server that must be told its port before it starts (the
    OS picks it; the small race until it is bound is the price of such servers)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def config_head(workers=1, listener="", access_log="off", admin=True):
    """The opening every test config shares: the worker count, one loopback listener named
    `public` (`listener`: more of its keys, already indented for it), the admin listener and the
    access log. Indented like the test templates that follow it (Citadel.write_config dedents)."""
    head = f"""
    workers: {workers}
    listeners:
      - name: public
        address: 127.0.0.1:0
{listener}"""
    if admin:
        head += """
    admin:
      address: 127.0.0.1:0"""
    return head + f"""
    access_log: {access_log}"""


class Upstream:
    """A tests/integration/upstream.py process."""

    def __init__(self, name, port=0, host="127.0.0.1", env=None):
        self.name = name
        self.port = port
        self.host = host
        self.env = env  # extra environment (UPSTREAM_TLS_*: see upstream.py)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(HERE, "upstream.py"), self.name, str(self.port), self.host],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, **(self.env or {})))
        line = self.proc.stdout.readline()
        m = re.match(r"PORT (\d+)", line or "")
        assert m, "upstream %s did not start: %r" % (self.name, line)
        self.port = int(m.group(1))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def restart(self):
        self.kill()
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start()
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def address(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)


class Citadel:
    """The real binary with a config written from a template."""

    def __init__(self, tmp_path, config, env=None, wrapper=()):
        self.tmp_path = tmp_path
        self.config_path = os.path.join(str(tmp_path), "citadel.yaml")
        self.write_config(config)
        self.lines = []
        self.lock = threading.Lock()
        # `wrapper`: a command that execs Citadel (prlimit, say), so that proc is still Citadel.
        self.proc = subprocess.Popen(list(wrapper) + [CITADEL, "-c", self.config_path],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.access_lines = []
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.access_lines),
                         daemon=True).start()
        self.ports = {}
        self.admin_port = None
        self.wait_for(r"started: ", timeout=10)
        for line in self.snapshot_lines():
            m = re.search(r"listener (\S+) listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
            m = re.search(r"admin listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.admin_port = int(m.group(1))

    def _pump(self, stream, sink):
        for line in stream:
            with self.lock:
                sink.append(line.rstrip("\n"))

    def snapshot_lines(self):
        with self.lock:
            return list(self.lines)

    def wait_for(self, pattern, timeout=10, start=0):
        rx = re.compile(pattern)

        def found():
            if self.proc.poll() is not None:
                raise AssertionError("citadel exited (%s):\n%s" %
                                     (self.proc.returncode, "\n".join(self.snapshot_lines())))
            return any(rx.search(l) for l in self.snapshot_lines()[start:])
        wait_until(found, timeout, what=pattern)

    def write_config(self, config):
        with open(self.config_path, "w") as f:
            f.write(textwrap.dedent(config))

    @property
    def port(self):
        return next(iter(self.ports.values()))

    def request(self, method, path, body=None, headers=None, listener=None, timeout=10):
        port = self.ports[listener] if listener else self.port
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def admin(self, method, path, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def metric(self, name_and_labels):
        _, text = self.admin("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(name_and_labels + " "):
                return float(line.split()[-1])
        return None

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        time.sleep(0.05)  # let the stderr pump take the last lines

    def sanitizer_reports(self):
        """Lines where a sanitizer build (make asan / make tsan) reported a problem."""
        marks = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                 "runtime error:")
        lines = self.snapshot_lines()
        reports = []
        for i, l in enumerate(lines):
            if not any(m in l for m in marks):
                continue
            # A test that exhausts descriptors on purpose (ignore_failed_memory_probes) leaves
            # UBSan unable to probe memory: that report says "<memory cannot be printed>".
            if (getattr(self, "ignore_failed_memory_probes", False) and "runtime error:" in l and
                    any("<memory cannot be printed>" in n for n in lines[i + 1:i + 3])):
                continue
            reports.append(l)
        return reports


@pytest.fixture
def upstreams():
    started = []

    def make(name, port=0, host="127.0.0.1", env=None):
        u = Upstream(name, port, host, env)
        started.append(u)
        return u
    yield make
    for u in started:
        u.kill()


@pytest.fixture
def citadel(tmp_path):
    started = []

    def make(config, **kw):
        c = Citadel(tmp_path, config, **kw)
        started.append(c)
        return c
    yield make
    for c in started:
        c.stop()
    reports = [r for c in started for r in c.sanitizer_reports()]
    assert not reports, "sanitizer reports from citadel:\n" + "\n".join(reports[:20])


def read_until_close(s, timeout=5.0, first_only=False):
    """Everything `s` receives until the peer closes or `timeout` seconds pass (`first_only`:
    the first piece only)."""
    s.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        chunks.append(b)
        if first_only:
            break
    return b"".join(chunks)


def raw_exchange(port, data, timeout=5.0, until_close=True):
    """Sends raw bytes and returns everything read until the peer closes (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        return read_until_close(s, timeout, first_only=not until_close)
    finally:
        s.close()


class LoadGenerator:
    """Keep-alive GET clients in threads, bounded in time; counts failures."""

    def __init__(self, port, path="/", threads=4):
        self.port = port
        self.path = path
        self.stop_flag = threading.Event()
        self.ok = 0
        self.failed = []
        self.stale = 0  # reused keep-alive connections found closed (clients retry these)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        conn = None
        while not self.stop_flag.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", self.path)
                r = conn.getresponse()
                r.read()
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.failed.append("status %d" % r.status)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - any failure counts
                # A keep-alive connection closed by the server between requests is not a failed
                # request (clients retry those); anything else is.
                if isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                  ConnectionResetError)) and conn is not None and getattr(
                                      conn, "_citadel_reused", False):
                    with self.lock:
                        self.stale += 1
                else:
                    with self.lock:
                        self.failed.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
                continue
            if conn is not None:
                conn._citadel_reused = True

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=15)
