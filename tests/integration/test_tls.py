"""TLS termination: certificates by SNI, versions, ALPN, client certificates, session resumption
across workers and reloads, certificate reload, HSTS and the redirect to https, refused configs.

Certificates are made by the `openssl` command for each test (a CA, leaf certificates it signs,
client certificates); clients are Python's ssl module and curl."""
import json
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import CITADEL, config_head, wait_until


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)


class Pki:
    """A CA and certificates it signs, as PEM files in `d`."""

    def __init__(self, d):
        self.d = str(d)
        os.makedirs(self.d, exist_ok=True)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=Test CA",
                cwd=self.d)

    def path(self, name):
        return os.path.join(self.d, name)

    def issue(self, name, cn, dns=(), client=False, days=30, ips=(), ocsp_url=None):
        """name.pem (the certificate, then the CA as its chain) and name.key."""
        ext = os.path.join(self.d, name + ".ext")
        with open(ext, "w") as f:
            if ocsp_url:
                f.write("authorityInfoAccess=OCSP;URI:%s\n" % ocsp_url)
            if dns or ips:
                f.write("subjectAltName=" + ",".join(["DNS:" + n for n in dns] +
                                                     ["IP:" + a for a in ips]) + "\n")
            f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=self.d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".leaf", "-days", str(days), "-extfile", ext,
                cwd=self.d)
        with open(self.path(name + ".pem"), "w") as out:
            for part in (name + ".leaf", "ca.pem"):
                with open(self.path(part)) as f:
                    out.write(f.read())
        return self.path(name + ".pem"), self.path(name + ".key")


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    return Pki(d)


def tls_config(pki, certs, tls_extra="", listener_extra="", routes=None, workers=1):
    cert_list = ", ".join('{ cert: %s, key: %s }' % (c, k) for c, k in certs)
    listener = f"""        tls:
          certificates: [ {cert_list} ]
{tls_extra}{listener_extra}"""
    return config_head(workers=workers, listener=listener) + (routes or """
    routes:
      - to: { respond: { status: 200, body: "over tls\\n" } }
    """)


def client_ctx(pki, cert=None, alpn=None, tls_max=None, tls_min=None):
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    if cert:
        ctx.load_cert_chain(*cert)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if tls_max:
        ctx.maximum_version = tls_max
    if tls_min:
        ctx.minimum_version = tls_min
    return ctx


def https_get(port, ctx, host="localhost", path="/", headers=None, session=None, timeout=5):
    """One request on a new TLS connection: (status, headers, body, ssl socket facts)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname=host, session=session)
    try:
        lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Connection: close"]
        lines += ["%s: %s" % kv for kv in (headers or {}).items()]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while True:
            try:
                b = s.recv(65536)
            except (ssl.SSLZeroReturnError, ConnectionResetError):
                break
            if not b:
                break
            data += b
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        hdrs = {}
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.decode().partition(":")
            hdrs[k.strip().lower()] = v.strip()
        facts = {"version": s.version(), "alpn": s.selected_alpn_protocol(),
                 "session": s.session, "reused": s.session_reused,
                 "peer_cn": dict(x[0] for x in s.getpeercert()["subject"])["commonName"]}
        return status, hdrs, body, facts
    finally:
        s.close()


def test_serves_https_and_picks_the_certificate_by_sni(pki, citadel):
    a = pki.issue("a", "a.test", dns=["a.test"])
    b = pki.issue("b", "wild.b.test", dns=["*.b.test"])
    c = citadel(tls_config(pki, [a, b]))
    ctx = client_ctx(pki)
    status, hdrs, body, facts = https_get(c.port, ctx, host="a.test")
    assert (status, body) == (200, b"over tls\n")
    assert facts["peer_cn"] == "a.test"
    assert https_get(c.port, ctx, host="x.b.test")[3]["peer_cn"] == "wild.b.test"
    # A wildcard covers one label only, and an unknown name gets the first certificate.
    nocheck = client_ctx(pki)
    nocheck.check_hostname = False
    assert https_get(c.port, nocheck, host="y.x.b.test")[3]["peer_cn"] == "a.test"
    assert https_get(c.port, nocheck, host="other.test")[3]["peer_cn"] == "a.test"
    # Names are case-insensitive; a trailing dot names the same host.
    assert https_get(c.port, nocheck, host="A.TEST")[3]["peer_cn"] == "a.test"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_versions_and_alpn(pki, citadel):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    c = citadel(tls_config(pki, [cert]))
    assert https_get(c.port, client_ctx(pki))[3]["version"] == "TLSv1.3"
    assert https_get(c.port, client_ctx(pki, tls_max=ssl.TLSVersion.TLSv1_2))[3]["version"] == \
        "TLSv1.2"
    facts = https_get(c.port, client_ctx(pki, alpn=["h2", "http/1.1"]))[3]
    assert facts["alpn"] == "http/1.1"  # no HTTP/2 yet: never chosen
    # A client offering only protocols the listener lacks still gets HTTP/1.1 (no ALPN answer).
    facts = https_get(c.port, client_ctx(pki, alpn=["h2"]))[3]
    assert facts["alpn"] is None
    # TLS 1.1 and below are refused.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        https_get(c.port, old)


def test_tls13_only(pki, citadel):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    c = citadel(tls_config(pki, [cert], tls_extra='          min_version: "1.3"\n'))
    assert https_get(c.port, client_ctx(pki))[3]["version"] == "TLSv1.3"
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        https_get(c.port, client_ctx(pki, tls_max=ssl.TLSVersion.TLSv1_2))


def test_session_tickets_resume_across_workers_and_reloads(pki, citadel):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    config = tls_config(pki, [cert], workers=2)
    c = citadel(config)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(pki, tls_max=version, tls_min=version)
        first = https_get(c.port, ctx)[3]
        assert not first["reused"]
        # Connections spread over both workers (SO_REUSEPORT): every one resumes.
        reused = [https_get(c.port, ctx, session=first["session"])[3]["reused"]
                  for _ in range(12)]
        assert all(reused), (version, reused)
    # The keys outlive a reload.
    ctx = client_ctx(pki, tls_max=ssl.TLSVersion.TLSv1_3)
    session = https_get(c.port, ctx)[3]["session"]
    assert c.admin("POST", "/config/reload")[0] == 200
    assert https_get(c.port, ctx, session=session)[3]["reused"]


def test_client_certificates_required(pki, citadel, upstreams):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    alice = pki.issue("alice", "alice", client=True)
    up = upstreams("app")
    tls_extra = f"""          client_auth: {{ ca: {pki.path("ca.pem")}, mode: required,
                          forward_subject: X-Client-Subject }}
"""
    c = citadel(tls_config(pki, [cert], tls_extra=tls_extra, routes=f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - match: {{ headers: [ {{ name: X-Client-Subject, exact: "CN=alice" }} ] }}
        to: {{ cluster: app }}
      - to: {{ respond: {{ status: 403, body: "who are you\\n" }} }}
    """))
    # Without a certificate the handshake fails (TLS 1.3 reports it on the first read).
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        https_get(c.port, client_ctx(pki))
    # A certificate from another CA fails too.
    other = Pki(os.path.join(pki.d, ".."))
    mallory = other.issue("mallory", "alice", client=True)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        https_get(c.port, client_ctx(pki, cert=mallory))
    # Alice is routed on her verified subject, which the upstream receives.
    status, _, body, _ = https_get(c.port, client_ctx(pki, cert=alice),
                                   headers={"X-Client-Subject": "CN=root"})
    assert status == 200
    seen = json.loads(body)["headers"]
    values = [v for k, v in seen if k.lower() == "x-client-subject"]
    assert values == ["CN=alice"], seen
    assert c.metric("citadel_tls_handshake_errors_total") >= 2


def test_client_certificates_optional_and_the_forged_field(pki, citadel, upstreams):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    up = upstreams("app")
    tls_extra = f"""          client_auth: {{ ca: {pki.path("ca.pem")}, mode: optional,
                          forward_subject: X-Client-Subject }}
"""
    c = citadel(tls_config(pki, [cert], tls_extra=tls_extra, routes=f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - to: {{ cluster: app }}
    """))
    # No certificate: served, and a subject the client sent itself never reaches the upstream.
    status, _, body, _ = https_get(c.port, client_ctx(pki),
                                   headers={"X-Client-Subject": "CN=alice"})
    assert status == 200
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert "x-client-subject" not in seen


def test_hsts_and_redirect_to_https(pki, citadel, upstreams):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    up = upstreams("app")
    listener = f"""        tls:
          certificates: [ {{ cert: {cert[0]}, key: {cert[1]} }} ]
          hsts: {{ max_age: 365d, include_subdomains: true, preload: true }}
      - name: plain
        address: 127.0.0.1:0
        redirect_to_https: {{ port: 8443 }}
"""
    c = citadel(config_head(listener=listener) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - match: {{ path_prefix: /own }}
        filters: [ {{ headers: {{ response: {{ set: {{ Strict-Transport-Security: max-age=5 }} }} }} }} ]
        to: {{ respond: {{ status: 200 }} }}
      - to: {{ cluster: app }}
    """)
    status, hdrs, _, _ = https_get(c.ports["public"], client_ctx(pki))
    assert status == 200
    assert hdrs["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    # Early answers get it too (the listener's own options run as its first filters).
    status, hdrs, _, _ = https_get(c.ports["public"], client_ctx(pki), path="/%2f")
    assert status == 400
    assert hdrs["strict-transport-security"].startswith("max-age=31536000")
    # A target's own value is kept.
    assert https_get(c.ports["public"], client_ctx(pki), path="/own")[1][
        "strict-transport-security"] == "max-age=5"
    # The plain listener: no HSTS (RFC 6797 7.2), every request redirected, upstream untouched.
    status, hdrs, _ = c.request("GET", "/a/b?c=d", listener="plain",
                                headers={"Host": "shop.test:8080"})
    assert status == 301
    assert hdrs["Location"] == "https://shop.test:8443/a/b?c=d"
    assert "Strict-Transport-Security" not in hdrs
    status, hdrs, _ = c.request("POST", "/form", body=b"x=1", listener="plain",
                                headers={"Host": "[::1]:80"})
    assert status == 308
    assert hdrs["Location"] == "https://[::1]:8443/form"


def test_a_reload_serves_new_certificates_and_keeps_open_connections(pki, citadel):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    c = citadel(tls_config(pki, [cert]))
    ctx = client_ctx(pki)
    raw = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    kept = ctx.wrap_socket(raw, server_hostname="localhost")
    assert https_get(c.port, ctx)[3]["peer_cn"] == "localhost"
    # New files under the same names: a reload loads them.
    pki.issue("s", "localhost", dns=["localhost", "renewed.test"])
    assert c.admin("POST", "/config/reload")[0] == 200

    def renewed_served():
        # The workers take the new snapshot from their loops, a moment after the reload answers.
        try:
            return https_get(c.port, ctx, host="renewed.test")[3]["peer_cn"] == "localhost"
        except ssl.SSLCertVerificationError:
            return False
    wait_until(renewed_served, what="the renewed certificate")
    # The connection opened before the reload still works.
    kept.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert kept.recv(4096).startswith(b"HTTP/1.1 200 ")
    kept.close()
    # A broken key refuses the reload and the old certificates keep serving.
    with open(cert[1], "w") as f:
        f.write("not a key\n")
    status, text = c.admin("POST", "/config/reload")
    assert status == 400 and "no PEM private key" in text, text
    assert https_get(c.port, ctx, host="renewed.test")[0] == 200


def test_certificate_files_that_change_on_disk_are_served_without_a_signal(pki, citadel):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    c = citadel(tls_config(pki, [cert]))
    ctx = client_ctx(pki)
    raw = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    kept = ctx.wrap_socket(raw, server_hostname="localhost")
    # A renewal writes new files under the same names (certbot, cert-manager, ACME clients).
    pki.issue("s", "localhost", dns=["localhost", "renewed.test"])

    def renewed_served():
        try:
            return https_get(c.port, ctx, host="renewed.test")[0] == 200
        except (ssl.SSLCertVerificationError, ssl.SSLError):
            return False
    wait_until(renewed_served, timeout=15, what="the renewed certificate, without a reload")
    c.wait_for("certificate files changed: reloading")
    kept.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert kept.recv(4096).startswith(b"HTTP/1.1 200 ")
    kept.close()


def test_what_is_not_tls_is_closed_and_counted(pki, citadel):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    c = citadel(tls_config(pki, [cert], listener_extra="        timeouts: { header: 1s }\n"))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    try:
        data = s.recv(4096)
    except ConnectionResetError:
        data = b""
    assert not data.startswith(b"HTTP/"), data
    s.close()
    # A client that connects and says nothing is closed after the header timeout.
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    t0 = time.monotonic()
    s.settimeout(5)
    try:
        assert s.recv(4096) == b""
    except ConnectionResetError:
        pass
    assert 0.5 < time.monotonic() - t0 < 4
    s.close()
    wait_until(lambda: c.metric("citadel_tls_handshake_errors_total") == 2,
               what="two failed handshakes counted")
    # And the listener still serves.
    assert https_get(c.port, client_ctx(pki))[0] == 200


def test_large_bodies_both_ways_over_tls(pki, citadel, upstreams):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    up = upstreams("app")
    c = citadel(tls_config(pki, [cert], routes=f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - to: {{ cluster: app }}
    """))
    body = os.urandom(3 * 1024 * 1024)
    out = subprocess.run(["curl", "-sS", "--cacert", pki.path("ca.pem"), "--resolve",
                          "localhost:%d:127.0.0.1" % c.port, "-X", "POST", "--data-binary", "@-",
                          "https://localhost:%d/sink" % c.port],
                         input=body, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["received"] == len(body)
    out = subprocess.run(["curl", "-sS", "--cacert", pki.path("ca.pem"), "--resolve",
                          "localhost:%d:127.0.0.1" % c.port,
                          "https://localhost:%d/bytes?n=5000000" % c.port],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout) == 5000000


@pytest.mark.parametrize("tls,error", [
    ("certificates: [ { cert: missing.pem, key: missing.key } ]", "cannot read certificate"),
    ("certificates: []", "at least one certificate"),
    ("certificates: [ { cert: CERT } ]", "needs `key`"),
    ("certificates: [ { cert: CERT, key: OTHERKEY } ]", "does not match the certificate"),
    ("{ certificates: [ { cert: CERT, key: KEY } ], min_version: \"1.1\" }", "min_version"),
    ("{ certificates: [ { cert: CERT, key: KEY } ], hsts: { preload: true } }",
     "preload needs include_subdomains"),
    ("{ certificates: [ { cert: CERT, key: KEY } ], client_auth: { mode: required } }",
     "client_auth needs `ca`"),
])
def test_bad_tls_config_is_refused_with_its_line(pki, tmp_path, tls, error):
    cert, key = pki.issue("s", "localhost", dns=["localhost"])
    _, other = pki.issue("o", "other")
    tls = tls.replace("OTHERKEY", other).replace("CERT", cert).replace("KEY", key)
    if not tls.startswith("{"):
        tls = "{ " + tls + " }"
    path = tmp_path / "bad.yaml"
    path.write_text("listeners:\n"
                    "  - name: s\n"
                    "    address: 127.0.0.1:0\n"
                    "    tls: %s\n"
                    "routes:\n"
                    "  - to: { respond: { status: 200 } }\n" % tls)
    out = subprocess.run([CITADEL, "validate", "-c", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0
    assert "bad.yaml:4:" in out.stderr and error in out.stderr, out.stderr


def test_a_session_never_resumes_on_another_listener_or_after_its_cas_change(pki, citadel):
    # From an outside attack: session tickets made on a listener without client_auth resumed on
    # one that requires a client certificate (and a session verified against one CA resumed
    # after the CA was replaced), skipping the certificate check.
    cert = pki.issue("s", "localhost", dns=["localhost"])
    alice = pki.issue("alice", "alice", client=True)
    listener = f"""        tls:
          certificates: [ {{ cert: {cert[0]}, key: {cert[1]} }} ]
      - name: guarded
        address: 127.0.0.1:0
        tls:
          certificates: [ {{ cert: {cert[0]}, key: {cert[1]} }} ]
          client_auth: {{ ca: CA, mode: required }}
"""
    config = config_head(workers=2, listener=listener.replace("CA", pki.path("ca.pem"))) + """
    routes:
      - to: { respond: { status: 200, body: "in\\n" } }
    """
    c = citadel(config)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        open_ctx = client_ctx(pki, tls_max=version, tls_min=version)
        session = https_get(c.ports["public"], open_ctx)[3]["session"]
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            https_get(c.ports["guarded"], open_ctx, session=session)
    # Alice's session resumes on the guarded listener...
    ctx = client_ctx(pki, cert=alice, tls_max=ssl.TLSVersion.TLSv1_2)
    session = https_get(c.ports["guarded"], ctx)[3]["session"]
    assert https_get(c.ports["guarded"], ctx, session=session)[3]["reused"]
    # ...until the listener trusts other CAs: then it is a full handshake (which fails here).
    other = Pki(os.path.join(pki.d, "other"))
    c.write_config(config.replace(pki.path("ca.pem"), other.path("ca.pem")))
    assert c.admin("POST", "/config/reload")[0] == 200

    def refused():
        try:
            https_get(c.ports["guarded"], ctx, session=session)
            return False
        except (ssl.SSLError, ConnectionResetError):
            return True
    wait_until(refused, what="the old session refused after the CA change")


def test_the_subject_field_is_removed_on_every_listener(pki, citadel, upstreams):
    # From an outside attack: a listener without client_auth passed a forged X-Client-Subject
    # to routes that trust it (and to the upstream).
    cert = pki.issue("s", "localhost", dns=["localhost"])
    up = upstreams("app")
    listener = f"""        tls:
          certificates: [ {{ cert: {cert[0]}, key: {cert[1]} }} ]
          client_auth: {{ ca: {pki.path("ca.pem")}, mode: optional, forward_subject: X-Client-Subject }}
      - name: plain
        address: 127.0.0.1:0
"""
    c = citadel(config_head(listener=listener) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - match: {{ path_prefix: /admin, headers: [ {{ name: X-Client-Subject, exact: "CN=admin" }} ] }}
        to: {{ respond: {{ status: 200, body: "hello, admin\\n" }} }}
      - to: {{ cluster: app }}
    """)
    status, _, body = c.request("GET", "/admin", listener="plain",
                                headers={"x-client-subject": "CN=admin"})
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert status == 200 and "x-client-subject" not in seen


def test_a_malformed_host_is_refused_before_the_https_redirect(pki, citadel):
    # From an outside attack: redirect_to_https built Location from Hosts other listeners refuse.
    c = citadel(config_head(listener="        redirect_to_https: { port: 8443 }\n") + """
    routes:
      - to: { respond: { status: 200 } }
    """)
    for host in ("[::1", "[evil.com]", "1.2.3.4:99999", "evil.com:abc"):
        status, _, _ = c.request("GET", "/a", headers={"Host": host})
        assert status == 400, host
    status, headers, _ = c.request("GET", "/a", headers={"Host": "ok.test"})
    assert status == 301 and headers["Location"] == "https://ok.test:8443/a"


def test_testssl_finds_no_weakness(pki, citadel, tmp_path):
    """Debian's testssl.sh against a TLS listener with HTTP/2: protocols, ciphers, forward
    secrecy and the known vulnerabilities (Heartbleed to LUCKY13). Only the test certificate's
    own findings are expected (a CA testssl does not know, a short validity, no OCSP URI)."""
    cert = pki.issue("s", "localhost", dns=["localhost"])
    c = citadel(tls_config(pki, [cert], listener_extra="        http2: true\n"))
    out = tmp_path / "testssl.json"
    subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off",
                    "--jsonfile-pretty", str(out), "-p", "-s", "-f", "-U",
                    "--ip", "127.0.0.1", "localhost:%d" % c.port],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    res = json.loads(out.read_text())["scanResult"][0]
    found = {f["id"]: f for k in ("protocols", "vulnerabilities", "pfs", "ciphers")
             for f in res.get(k, [])}
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert found[old]["finding"] == "not offered", found[old]
    assert found["TLS1_2"]["finding"] == "offered"
    assert found["TLS1_3"]["finding"].startswith("offered")
    assert found["ALPN_HTTP2"]["finding"] == "h2"
    bad = [(i, f["severity"], f["finding"]) for i, f in found.items()
           if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")]
    assert not bad, bad
    vulns = [f for f in res["vulnerabilities"] if f["severity"] not in ("OK", "INFO")]
    assert not vulns, vulns


def test_ocsp_responses_are_fetched_and_stapled(pki, citadel):
    """A certificate naming an OCSP responder (tests/integration/ocsp_responder.py, a real one
    over HTTP) gets its response fetched by Citadel and stapled: openssl s_client -status sees a
    good one. A revoked certificate's response is not stapled."""
    from conftest import PYTHON, HERE
    import re
    responder = subprocess.Popen([PYTHON, os.path.join(HERE, "ocsp_responder.py"),
                                  pki.path("ca.pem"), pki.path("ca.key")],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(re.match(r"PORT (\d+)", responder.stdout.readline()).group(1))
        url = "http://127.0.0.1:%d/" % port
        cert = pki.issue("s", "localhost", dns=["localhost"], ocsp_url=url)
        bad = pki.issue("bad", "revoked.test", dns=["revoked.test"], ocsp_url=url)
        serial = subprocess.run(["openssl", "x509", "-in", bad[0], "-noout", "-serial"],
                                capture_output=True, text=True, check=True).stdout
        with open(pki.path("revoked.txt"), "w") as f:
            f.write(serial.strip().split("=", 1)[1] + "\n")
        c = citadel(tls_config(pki, [cert, bad]))
        c.wait_for("OCSP response for .*s.pem stapled", timeout=15)
        c.wait_for("OCSP fetch for .*bad.pem failed .*revoked", timeout=15)

        def status(name):
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % c.port,
                                "-servername", name, "-status", "-CAfile", pki.path("ca.pem")],
                               input="", capture_output=True, text=True, timeout=10)
            return r.stdout
        wait_until(lambda: "Cert Status: good" in status("localhost"), timeout=10,
                   what="a stapled good OCSP response")
        assert "OCSP Response Status: successful" in status("localhost")
        assert "no response sent" in status("revoked.test")
    finally:
        responder.kill()
        responder.wait(timeout=5)
