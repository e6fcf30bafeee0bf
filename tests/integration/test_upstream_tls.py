"""TLS to upstreams: a cluster with `tls:` verifies its endpoints' certificates (a configured CA
bundle or the system's store; the name from `sni` or the endpoint's host, IP literals against the
certificate's addresses), sends SNI, presents a client certificate where the upstream asks for
one, resumes sessions, and health-checks over TLS. What the upstream saw is read back from it
(upstream.py serving https with Python's ssl module)."""
import json
import os
import time

import pytest

from conftest import CITADEL, config_head, wait_until
from test_tls import Pki, pki  # noqa: F401  (the fixture)


def tls_upstream(upstreams, pki, name="app", cert=None, client_ca=None):
    cert = cert or pki.issue(name, "localhost", dns=["localhost"], ips=["127.0.0.1"])
    env = {"UPSTREAM_TLS_CERT": cert[0], "UPSTREAM_TLS_KEY": cert[1]}
    if client_ca:
        env["UPSTREAM_TLS_CLIENT_CA"] = client_ca
    return upstreams(name, env=env)


def proxy_config(endpoint, tls, extra=""):
    return config_head() + f"""
    clusters:
      - name: app
        endpoints: [{endpoint}]
        tls: {tls}
{extra}
    routes:
      - to: {{ cluster: app }}
    """


def echo(c, path="/"):
    status, _, body = c.request("GET", path)
    return status, (json.loads(body) if status == 200 else body)


def test_a_verified_upstream_by_name_gets_sni_and_resumes(pki, citadel, upstreams):
    up = tls_upstream(upstreams, pki)
    c = citadel(proxy_config(f"localhost:{up.port}", f"{{ ca: {pki.path('ca.pem')} }}",
                             "        pool: { max_idle: 0 }"))
    status, seen = echo(c)
    assert status == 200, seen
    assert seen["tls"]["sni"] == "localhost"
    assert seen["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert seen["tls"]["alpn"] == "http/1.1"
    assert seen["tls"]["resumed"] is False
    # No idle connection is kept (max_idle: 0): the next request connects again and resumes.
    status, seen = echo(c)
    assert status == 200 and seen["tls"]["resumed"] is True, seen


def test_keep_alive_reuses_the_tls_connection(pki, citadel, upstreams):
    up = tls_upstream(upstreams, pki)
    c = citadel(proxy_config(f"127.0.0.1:{up.port}", f"{{ ca: {pki.path('ca.pem')} }}"))
    for _ in range(5):
        status, seen = echo(c)
        assert status == 200, seen
        # An IP literal is verified against the certificate's IP address, and never sent as SNI.
        assert seen["tls"]["sni"] is None
    assert c.metric('citadel_upstream_connections_total{cluster="app"}') == 1


@pytest.mark.parametrize("case", ["untrusted", "wrong_name", "wrong_ip", "plain_upstream"])
def test_an_upstream_that_fails_verification_is_never_sent_the_request(pki, citadel, upstreams,
                                                                       case):
    if case == "untrusted":
        other = Pki(os.path.join(pki.d, "other"))
        up = tls_upstream(upstreams, pki, cert=other.issue("o", "localhost", dns=["localhost"]))
        endpoint, tls, why = f"localhost:{up.port}", f"{{ ca: {pki.path('ca.pem')} }}", \
            "certificate verify failed"
    elif case == "wrong_name":
        up = tls_upstream(upstreams, pki)
        endpoint, tls, why = f"localhost:{up.port}", \
            f"{{ ca: {pki.path('ca.pem')}, sni: api.example.com }}", "hostname mismatch"
    elif case == "wrong_ip":
        up = tls_upstream(upstreams, pki, cert=pki.issue("n", "localhost", dns=["localhost"]))
        endpoint, tls, why = f"127.0.0.1:{up.port}", f"{{ ca: {pki.path('ca.pem')} }}", \
            "IP address mismatch"
    else:
        up = upstreams("plain")
        endpoint, tls, why = up.address, f"{{ ca: {pki.path('ca.pem')} }}", "connect_failure"
    c = citadel(proxy_config(endpoint, tls))
    status, _, body = c.request("GET", "/secret?token=1")
    assert status in (502, 503), (status, body)
    c.wait_for(why)
    assert c.metric('citadel_upstream_connect_failures_total{cluster="app"}') >= 1


def test_verify_false_accepts_any_certificate(pki, citadel, upstreams):
    other = Pki(os.path.join(pki.d, "other"))
    up = tls_upstream(upstreams, pki, cert=other.issue("o", "whoever", dns=["whoever.test"]))
    c = citadel(proxy_config(f"127.0.0.1:{up.port}", "{ verify: false }"))
    status, seen = echo(c)
    assert status == 200, seen


def test_client_certificate_to_an_upstream_that_requires_one(pki, citadel, upstreams):
    up = tls_upstream(upstreams, pki, client_ca=pki.path("ca.pem"))
    me = pki.issue("citadel", "citadel-proxy", client=True)
    ca = pki.path("ca.pem")
    c = citadel(proxy_config(f"localhost:{up.port}",
                             f"{{ ca: {ca}, cert: {me[0]}, key: {me[1]} }}"))
    status, seen = echo(c)
    assert status == 200, seen
    assert seen["tls"]["client_cn"] == "citadel-proxy"
    # Without one the upstream refuses the handshake (TLS 1.3 reports it on the first read).
    c2 = citadel(proxy_config(f"localhost:{up.port}", f"{{ ca: {ca} }}"))
    status, _, _ = c2.request("GET", "/")
    assert status in (502, 503)


def test_health_checks_run_over_tls(pki, citadel, upstreams):
    up = tls_upstream(upstreams, pki)
    c = citadel(proxy_config(f"localhost:{up.port}", f"{{ ca: {pki.path('ca.pem')} }}", """
        health_check: { path: /health, interval: 100ms, timeout: 100ms, healthy: 1, unhealthy: 1 }
"""))
    def health():
        _, body = c.admin("GET", "/clusters")
        return json.loads(body)["clusters"][0]["endpoints"][0]["healthy"]
    # Probes every 100 ms, one failure marks the endpoint down: plain probes would fail at once.
    time.sleep(0.8)
    assert health() is True, "\n".join(c.snapshot_lines())
    up.kill()
    wait_until(lambda: health() is False, timeout=5)


def test_a_reload_after_the_ca_file_changed_uses_the_new_bundle(pki, citadel, upstreams):
    up = tls_upstream(upstreams, pki)
    ca = os.path.join(pki.d, "bundle.pem")
    other = Pki(os.path.join(pki.d, "other"))
    with open(ca, "w") as f:
        f.write(open(other.path("ca.pem")).read())
    config = proxy_config(f"localhost:{up.port}", f"{{ ca: {ca} }}")
    c = citadel(config)
    status, _, _ = c.request("GET", "/")
    assert status in (502, 503)
    with open(ca, "w") as f:
        f.write(open(pki.path("ca.pem")).read())
    c.write_config(config)  # the same text: only the file changed
    c.signal(1)
    c.wait_for("config reloaded")
    wait_until(lambda: c.request("GET", "/")[0] == 200, timeout=5)


@pytest.mark.parametrize("tls,error", [
    ("{ ca: /nonexistent/ca.pem }", "cannot read ca /nonexistent/ca.pem"),
    ("{ cert: /nonexistent/c.pem }", "both `cert` and `key`"),
    ("{ sni: 'bad name' }", "expected a DNS host name"),
    ("{ sni: '[::1]' }", "expected a DNS host name"),
    ("{ sni: '127.1' }", "expected a DNS host name"),
    ("{ sni: '%s.example' }" % ("a" * 64), "expected a DNS host name"),
    ("{ verify: maybe }", "verify"),
    ("{ colour: blue }", "colour"),
])
def test_bad_upstream_tls_config_is_refused_with_its_line(tmp_path, tls, error):
    import subprocess
    p = tmp_path / "c.yaml"
    p.write_text(proxy_config("127.0.0.1:9", tls))
    r = subprocess.run([CITADEL, "validate", "-c", str(p)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert error in r.stderr and "c.yaml:13:" in r.stderr, r.stderr
