"""Config reload under load, refused bad configs, drain on SIGTERM, `citadel validate`."""
import json
import signal
import subprocess
import threading
import time

from conftest import CITADEL, config_head, LoadGenerator, wait_until


def cfg(ups, body="v1", extra_listener=""):
    eps = ", ".join(u.address for u in ups)
    return config_head(workers=2, listener=extra_listener) + f"""
    clusters:
      - name: app
        endpoints: [{eps}]
        health_check: {{ path: /health, interval: 1s }}
    routes:
      - match: {{ path: /version }}
        to: {{ respond: {{ status: 200, body: "{body}" }} }}
      - match: {{ path_prefix: / }}
        to: {{ cluster: app }}
    """


def test_100_reloads_under_load_fail_no_request(upstreams, citadel):
    a, b = upstreams("a"), upstreams("b")
    c = citadel(cfg([a, b]))
    with LoadGenerator(c.port, "/slow?ms=5", threads=4) as load:
        for i in range(100):
            # Alternate the body and the endpoint order so that each reload changes the config.
            ups = [a, b] if i % 2 else [b, a]
            c.write_config(cfg(ups, body="v%d" % i))
            if i % 2:
                status, text = c.admin("POST", "/config/reload")
                assert status == 200, text
            else:
                n = len(c.snapshot_lines())
                c.signal(signal.SIGHUP)
                c.wait_for(r"config reloaded", start=n, timeout=5)
    assert load.failed == [], load.failed[:5]
    assert load.stale == 0
    assert load.ok > 50
    # A SIGHUP's "config reloaded" may be matched by the line of the reload before it (the log
    # pump can lag the snapshot of lines taken before the signal): the count settles, bounded.
    wait_until(lambda: c.metric("citadel_config_reloads_total") == 100, 10,
               what="100 reloads counted")
    assert c.request("GET", "/version")[2] == b"v99"


def test_bad_config_is_refused_and_old_one_keeps_serving(upstreams, citadel):
    a = upstreams("a")
    c = citadel(cfg([a], body="good"))
    c.write_config(cfg([a], body="bad").replace("lb:", "xx:").replace(
        "health_check:", "health_chekc:"))
    status, text = c.admin("POST", "/config/reload")
    assert status == 400
    assert "citadel.yaml:" in text and "health_chekc: unknown key" in text
    assert c.request("GET", "/version")[2] == b"good"
    assert c.metric("citadel_config_reload_failures_total") == 1
    # SIGHUP with a bad config: refused too, still serving.
    n = len(c.snapshot_lines())
    c.signal(signal.SIGHUP)
    c.wait_for(r"reload refused", start=n)
    assert c.request("GET", "/version")[2] == b"good"


def test_reload_adds_and_removes_listeners(upstreams, citadel):
    a = upstreams("a")
    c = citadel(cfg([a]))
    extra = """      - name: second
        address: 127.0.0.1:0"""
    c.write_config(cfg([a], body="two", extra_listener=extra))
    n = len(c.snapshot_lines())
    assert c.admin("POST", "/config/reload")[0] == 200
    c.wait_for(r"listener second listening", start=n)
    import re
    port = None
    for line in c.snapshot_lines()[n:]:
        m = re.search(r"listener second listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
    c.ports["second"] = port
    assert c.request("GET", "/version", listener="second")[2] == b"two"
    c.write_config(cfg([a], body="three"))
    assert c.admin("POST", "/config/reload")[0] == 200
    wait_until(lambda: _refused(port), timeout=5, what="second listener closed")
    assert c.request("GET", "/version", listener="public")[2] == b"three"


def _refused(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigterm_lets_in_flight_requests_complete(upstreams, citadel):
    a = upstreams("a")
    c = citadel(cfg([a]))
    results = []

    def slow():
        results.append(c.request("GET", "/slow?ms=1500", timeout=10))
    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    c.signal(signal.SIGTERM)
    time.sleep(0.2)
    assert c.admin("GET", "/readyz")[0] == 503  # not ready while draining
    assert _refused(c.port)  # no new connections
    for t in threads:
        t.join(timeout=10)
    assert [r[0] for r in results] == [200] * 4
    assert all(r[1].get("Connection") == "close" for r in results)
    c.proc.wait(timeout=10)
    assert c.proc.returncode == 0


def test_validate_prints_every_error_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""listeners:
  - name: public
    address: nowhere
clusters:
  - name: app
    lb: round-robin
    endpoints: [127.0.0.1:1]
    timeouts: { connect: fast }
routes:
  - match: { path_prefix: / }
    to: { cluster: missing }
unknown_top: 1
""")
    r = subprocess.run([CITADEL, "validate", "-c", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    err = r.stderr
    assert "bad.yaml:3: listeners[0].address: expected an address host:port" in err
    assert 'bad.yaml:6: clusters[0].lb: unknown value "round-robin" (expected round_robin' in err
    assert "bad.yaml:8: clusters[0].timeouts.connect: expected a duration" in err
    assert 'bad.yaml:11: routes[0].to.cluster: no cluster named "missing"' in err
    assert "bad.yaml:12: unknown_top: unknown key" in err
    good = tmp_path / "good.yaml"
    good.write_text("listeners: [{name: p, address: '127.0.0.1:0'}]\n"
                    "routes: [{to: {respond: {status: 204}}}]\n")
    r = subprocess.run([CITADEL, "validate", "-c", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_start_with_bad_config_exits_nonzero(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners: [}\n")
    r = subprocess.run([CITADEL, "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "bad.yaml:1: YAML syntax error" in r.stderr


def test_version_and_help():
    r = subprocess.run([CITADEL, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("citadel ")
    r = subprocess.run([CITADEL, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "validate" in r.stdout
