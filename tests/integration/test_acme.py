"""Automatic certificates (ACME, RFC 8555) against a real ACME server: Debian's pebble, started by
each test on loopback with pebble-challtestsrv as its DNS (every name resolves to 127.0.0.1), so
its validation authority reaches Citadel's listeners for HTTP-01 and TLS-ALPN-01.

Pebble rejects 5% of nonces on purpose (the client must retry badNonce) and signs with a root it
makes at start, fetched from its management API to verify what Citadel serves."""
import datetime
import hashlib
import json
import os
import socket
import ssl
import stat
import subprocess
import time
import urllib.request

import pytest

from conftest import CITADEL, SLOWDOWN, Citadel, free_port, wait_until
from test_tls import Pki

DOMAINS = ["a.citadel.test", "b.citadel.test"]


class Pebble:
    """pebble and pebble-challtestsrv on loopback; Citadel is validated on http_port and
    tls_port."""

    def __init__(self, d, pki, http_port, tls_port):
        self.d = str(d)
        os.makedirs(self.d, exist_ok=True)
        self.pki = pki
        self.port = free_port()
        self.mgmt = free_port()
        self.dns = free_port()
        self.http_port = http_port
        self.tls_port = tls_port
        self.procs = []
        cert, key = pki.issue("pebble", "127.0.0.1", dns=["localhost"], ips=["127.0.0.1"])
        with open(os.path.join(self.d, "pebble.json"), "w") as f:
            json.dump({"pebble": {
                "listenAddress": "127.0.0.1:%d" % self.port,
                "managementListenAddress": "127.0.0.1:%d" % self.mgmt,
                "certificate": cert, "privateKey": key,
                "httpPort": http_port, "tlsPort": tls_port,
                "ocspResponderURL": "", "externalAccountBindingRequired": False}}, f)

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def start(self, nonce_reject=None):
        log = open(os.path.join(self.d, "challtestsrv.log"), "w")
        self.procs.append(subprocess.Popen(
            ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", "127.0.0.1:%d" % self.dns, "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", "127.0.0.1:%d" % free_port()],
            stdout=log, stderr=subprocess.STDOUT))
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1")
        if nonce_reject is not None:
            env["PEBBLE_WFE_NONCEREJECT"] = str(nonce_reject)
        log = open(os.path.join(self.d, "pebble.log"), "w")
        self.procs.append(subprocess.Popen(
            ["pebble", "-config", os.path.join(self.d, "pebble.json"),
             "-dnsserver", "127.0.0.1:%d" % self.dns],
            stdout=log, stderr=subprocess.STDOUT, env=env))
        ctx = ssl.create_default_context(cafile=self.pki.path("ca.pem"))

        def up():
            try:
                urllib.request.urlopen(self.directory, context=ctx, timeout=2).read()
                return True
            except OSError:
                return False
        wait_until(up, 15, what="pebble")
        return self

    def root(self):
        """The root pebble signs with (PEM), from its management API."""
        ctx = ssl.create_default_context(cafile=self.pki.path("ca.pem"))
        url = "https://127.0.0.1:%d/roots/0" % self.mgmt
        return urllib.request.urlopen(url, context=ctx, timeout=5).read().decode()

    def log(self):
        with open(os.path.join(self.d, "pebble.log")) as f:
            return f.read()

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []


@pytest.fixture
def acme_env(tmp_path):
    pki = Pki(tmp_path / "pki")
    pebble = Pebble(tmp_path / "pebble", pki, free_port(), free_port())
    started = []

    def citadel(config):
        c = Citadel(tmp_path, config)
        started.append(c)
        return c
    yield pki, pebble, citadel
    for c in started:
        c.stop()
    pebble.stop()


def acme_config(pebble, pki, data_dir, plain=True, extra="", tls_extra="", domains=DOMAINS):
    plain_listener = f"""
      - name: web
        address: 127.0.0.1:{pebble.http_port}
        redirect_to_https: {{ port: {pebble.tls_port} }}""" if plain else ""
    return f"""
    workers: 2
    listeners:
      - name: secure
        address: 127.0.0.1:{pebble.tls_port}
        tls:
          acme:
            directory: {pebble.directory}
            email: ops@citadel.test
            domains: [{", ".join(domains)}]
            ca: {pki.path("ca.pem")}
            retry: 1s
{tls_extra}{plain_listener}
    admin:
      address: 127.0.0.1:0
    access_log: off
    store:
      data_dir: {data_dir}
    routes:
      - to: {{ respond: {{ status: 200, body: "secured\\n" }} }}
{extra}"""


def served(port, name, cafile=None, alpn=None):
    """The certificate (DER) a handshake for `name` gets, and the protocol chosen. With `cafile`
    the chain and the name are verified."""
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            return s.getpeercert(binary_form=True), s.selected_alpn_protocol()


def served_issued(port, name, root, alpn=None):
    """served() verified against pebble's root, once the workers serve the issued certificate
    (the log line comes as the snapshot is published; workers take it from their loops)."""
    def attempt():
        try:
            return served(port, name, cafile=root, alpn=alpn)
        except ssl.SSLCertVerificationError:
            return None
    return wait_until(attempt, 5 * SLOWDOWN, what="the issued certificate for " + name)


def cert_facts(der):
    """(serial, issuer CN, subject CN, SAN names) of a DER certificate, by openssl."""
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial", "-issuer",
                          "-subject", "-ext", "subjectAltName"], input=der, capture_output=True,
                         check=True, timeout=10).stdout.decode()
    serial = out.split("serial=")[1].split()[0]
    issuer = out.split("issuer=")[1].splitlines()[0]
    subject = out.split("subject=")[1].splitlines()[0]
    names = [p.strip()[4:] for p in out.split("Subject Alternative Name:")[1].split(",")
             if p.strip().startswith("DNS:")] if "Subject Alternative Name" in out else []
    return serial, issuer, subject, names


def validate(path):
    return subprocess.run([CITADEL, "validate", "-c", str(path)], capture_output=True, text=True,
                          timeout=30)


def write_root(tmp_path, pebble):
    path = os.path.join(str(tmp_path), "pebble-root.pem")
    with open(path, "w") as f:
        f.write(pebble.root())
    return path


def store_dir(data_dir, pebble, first=DOMAINS[0]):
    digest = hashlib.sha256(pebble.directory.encode()).hexdigest()[:8]
    return os.path.join(data_dir, "acme", "127.0.0.1_%d-%s" % (pebble.port, digest), first)


def test_http01_issues_serves_stores_and_survives_a_restart(acme_env, tmp_path):
    pki, pebble, start = acme_env
    pebble.start()
    data = str(tmp_path / "data")
    c = start(acme_config(pebble, pki, data))
    c.wait_for(r"ACME: certificate for a\.citadel\.test obtained", timeout=30 * SLOWDOWN)
    root = write_root(tmp_path, pebble)
    for name in DOMAINS:
        der, _ = served_issued(pebble.tls_port, name, root)  # verified against pebble's root
        serial, issuer, _, names = cert_facts(der)
        assert sorted(names) == sorted(DOMAINS)
        assert "Pebble" in issuer
    first_serial = serial
    # Pebble's validation authority fetched the key authorization over HTTP from the plain
    # listener, ahead of its redirect to https; the answer is withdrawn once valid.
    assert "validate w/ HTTP" in pebble.log()
    c.wait_for(r"ACME: answering the http-01 challenge for b\.citadel\.test")
    status, headers, _ = c.request("GET", "/.well-known/acme-challenge/anything", listener="web",
                                   headers={"Host": "a.citadel.test"})
    assert status == 301 and headers["Location"].startswith("https://a.citadel.test")
    # Stored under the data directory, private files only.
    d = store_dir(data, pebble)
    for f in ("cert.pem", "key.pem"):
        mode = stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode)
        assert mode == 0o600, (f, oct(mode))
    assert stat.S_IMODE(os.stat(os.path.join(os.path.dirname(d), "account.key")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert c.metric('citadel_acme_orders_total{result="ok"}') == 1
    expiry = c.metric('citadel_acme_certificate_expiry_seconds{domain="a.citadel.test"}')
    assert expiry > time.time()
    c.stop()
    # A restart serves the stored certificate at once and orders nothing.
    c2 = start(acme_config(pebble, pki, data))
    der, _ = served(pebble.tls_port, DOMAINS[1], cafile=root)
    assert cert_facts(der)[0] == first_serial
    c2.wait_for(r"ACME: certificate for a\.citadel\.test renews in \d+s")
    assert c2.metric('citadel_acme_orders_total{result="ok"}') == 0
    assert c2.sanitizer_reports() == []


def test_tls_alpn01_without_a_plain_listener(acme_env, tmp_path):
    pki, pebble, start = acme_env
    pebble.start(nonce_reject=40)  # 40% of good nonces refused: badNonce retried
    c = start(acme_config(pebble, pki, str(tmp_path / "data"), plain=False))
    c.wait_for(r"ACME: certificate for a\.citadel\.test obtained", timeout=30 * SLOWDOWN)
    c.wait_for(r"ACME: answering the tls-alpn-01 challenge for b\.citadel\.test")
    # With 40% refused, a dozen requests all passing is a 0.2% chance.
    assert c.metric("citadel_acme_bad_nonces_total") > 0
    root = write_root(tmp_path, pebble)
    der, proto = served_issued(pebble.tls_port, "b.citadel.test", root, alpn=["h2", "http/1.1"])
    assert proto == "http/1.1"
    # With no challenge in progress, a handshake asking for acme-tls/1 gets the issued
    # certificate and no protocol (a validation server would refuse that); the others are
    # unaffected.
    der2, proto = served(pebble.tls_port, "a.citadel.test", cafile=root, alpn=["acme-tls/1"])
    assert proto is None and der2 == der
    assert c.sanitizer_reports() == []


def test_failures_back_off_and_the_placeholder_serves_meanwhile(acme_env, tmp_path):
    pki, pebble, start = acme_env
    c = start(acme_config(pebble, pki, str(tmp_path / "data")))  # pebble not started yet
    c.wait_for(r"ACME: certificate for a\.citadel\.test not obtained \(directory: .*retry in 1s")
    c.wait_for(r"not obtained .*retry in 2s", timeout=5 * SLOWDOWN)
    # Until one is issued, a self-signed placeholder for the names answers handshakes.
    der, _ = served(pebble.tls_port, "a.citadel.test")
    _, issuer, subject, names = cert_facts(der)
    assert issuer == subject and sorted(names) == sorted(DOMAINS)
    status, _, body = https_request(pebble.tls_port, "a.citadel.test")
    assert status == 200 and body == b"secured\n"
    pebble.start()
    c.wait_for(r"ACME: certificate for a\.citadel\.test obtained", timeout=40 * SLOWDOWN)
    root = write_root(tmp_path, pebble)
    served_issued(pebble.tls_port, "a.citadel.test", root)
    assert c.metric('citadel_acme_orders_total{result="failed"}') >= 2


def https_request(port, name, sock=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = sock or ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname=name)
    s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % name).encode())
    data = b""
    while b"secured\n" not in data:
        b = s.recv(4096)
        if not b:
            break
        data += b
    if sock is None:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


def near_expiry_certificate(d, names):
    """A stored certificate two months old with a day left (self-made, not pebble's)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old issuer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(name).public_key(key.public_key()).serial_number(4242)
        .not_valid_before(now - datetime.timedelta(days=60))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256()))
    os.makedirs(d, mode=0o700)
    with open(os.path.join(d, "cert.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(d, "key.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def test_renews_ahead_of_expiry_without_a_restart(acme_env, tmp_path):
    pki, pebble, start = acme_env
    data = str(tmp_path / "data")
    near_expiry_certificate(store_dir(data, pebble), DOMAINS)
    c = start(acme_config(pebble, pki, data))  # pebble not up: the old certificate serves
    der, _ = served(pebble.tls_port, "a.citadel.test")
    assert cert_facts(der)[0] == "1092"  # 4242
    # A connection made with the old certificate stays open across the renewal.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    kept = ctx.wrap_socket(socket.create_connection(("127.0.0.1", pebble.tls_port), timeout=5),
                           server_hostname="a.citadel.test")
    assert https_request(pebble.tls_port, "a.citadel.test", sock=kept)[0] == 200
    pebble.start()
    c.wait_for(r"ACME: certificate for a\.citadel\.test obtained", timeout=40 * SLOWDOWN)
    root = write_root(tmp_path, pebble)
    der, _ = served_issued(pebble.tls_port, "a.citadel.test", root)
    assert cert_facts(der)[0] != "1092"
    assert https_request(pebble.tls_port, "a.citadel.test", sock=kept)[0] == 200
    kept.close()
    with open(os.path.join(store_dir(data, pebble), "cert.pem")) as f:
        assert "BEGIN CERTIFICATE" in f.read()
    c.wait_for(r"renews in \d+s")


@pytest.mark.parametrize("acme, error", [
    ("{ domains: [a.test] }", "acme needs `directory`"),
    ("{ directory: http://127.0.0.1:1/dir, domains: [a.test] }", "must start with https://"),
    ("{ directory: https://127.0.0.1:1/dir, domains: [1.2.3.4] }", "expected a DNS name"),
    ("{ directory: https://127.0.0.1:1/dir }", "acme needs `domains`"),
    ("{ directory: https://127.0.0.1:1/dir, domains: [\"*.a.test\"] }", "DNS-01"),
    ("{ directory: https://127.0.0.1:1/dir, domains: [a..test] }",
     'expected a DNS name such as www.example.com, got "a..test"'),
    ("{ directory: https://127.0.0.1:1/dir, domains: [a.test, A.test] }",
     '"a.test" is listed twice'),
    ("{ directory: https://127.0.0.1:1/dir, domains: [a.test], challenge: http-01 }",
     "challenge http-01 needs a plain (non-TLS) listener"),
    ("{ directory: https://127.0.0.1:1/dir, domains: [a.test], challenge: dns-01 }",
     "expected auto, http-01, tls-alpn-01"),
    ("{ directory: https://127.0.0.1:1/dir, domains: [a.test], email: nobody }",
     "expected an email address"),
    ("{ directory: https://127.0.0.1:1/dir, domains: [a.test], ca: /nonexistent.pem }",
     "nonexistent.pem"),
    ("{ directory: \"https://%2e%2e/dir\", domains: [a.test] }", "invalid host name"),
    ("{ directory: \"https://a_b/dir\", domains: [a.test] }", "expected a host name"),
    ("{ directory: \"https://user:pw@127.0.0.1:1/dir\", domains: [a.test] }", "user info"),
    ("{ directory: https://127.0.0.1:1/dir, domains: [a.test], retry: 2d }", "at most 1d"),
])
def test_bad_acme_configs_are_refused_with_their_line(tmp_path, acme, error):
    path = tmp_path / "c.yaml"
    path.write_text(f"""listeners:
  - name: s
    address: 127.0.0.1:0
    tls:
      acme: {acme}
routes:
  - to: {{ respond: {{ status: 200 }} }}
""")
    r = validate(path)
    assert r.returncode == 1, r.stdout
    assert ("c.yaml:5:" in r.stderr or "c.yaml:6:" in r.stderr) and error in r.stderr, r.stderr


def test_one_domain_in_two_certificates_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("""listeners:
  - name: one
    address: 127.0.0.1:0
    tls:
      acme: { directory: "https://127.0.0.1:1/dir", domains: [a.test, shared.test] }
  - name: two
    address: 127.0.0.2:0
    tls:
      acme: { directory: "https://127.0.0.1:1/dir", domains: [b.test, shared.test] }
routes:
  - to: { respond: { status: 200 } }
""")
    r = validate(path)
    assert r.returncode == 1 and "c.yaml:9:" in r.stderr, r.stderr
    assert '"shared.test" is also in the acme block at line 5' in r.stderr, r.stderr


def test_two_listeners_asking_for_different_certificates_under_one_name(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("""listeners:
  - name: v4
    address: 127.0.0.1:0
    tls:
      acme: { directory: "https://127.0.0.1:1/dir", domains: [a.test] }
  - name: v6
    address: "[::1]:0"
    tls:
      acme: { directory: "https://127.0.0.1:1/dir", domains: [a.test, b.test] }
routes:
  - to: { respond: { status: 200 } }
""")
    r = validate(path)
    assert r.returncode == 1 and "c.yaml:9:" in r.stderr and "share one certificate" in r.stderr, \
        r.stderr


def test_a_reload_to_another_acme_server_orders_from_it(acme_env, tmp_path):
    """The certificate belongs to the server that issued it: pointing the block at another
    server (staging to production) orders there at once instead of serving the old one."""
    pki, pebble, start = acme_env
    pebble.start()
    data = str(tmp_path / "data")
    c = start(acme_config(pebble, pki, data))
    c.wait_for(r"ACME: certificate for a\.citadel\.test obtained", timeout=30 * SLOWDOWN)
    first_root = write_root(tmp_path, pebble)
    served_issued(pebble.tls_port, "a.citadel.test", first_root)
    pebble.stop()
    # A second server, validating the same listeners.
    other = Pebble(tmp_path / "pebble2", pki, pebble.http_port, pebble.tls_port)
    try:
        other.start()
        mark = len(c.snapshot_lines())
        c.write_config(acme_config(other, pki, data))
        assert c.admin("POST", "/config/reload")[0] == 200
        c.wait_for(r"ACME: certificate for a\.citadel\.test obtained", timeout=30 * SLOWDOWN,
                   start=mark)
        path = os.path.join(str(tmp_path), "pebble2-root.pem")
        with open(path, "w") as f:
            f.write(other.root())
        served_issued(other.tls_port, "a.citadel.test", path)
        # The challenge answers went with the order: the plain listener redirects again.
        status, _, _ = c.request("GET", "/.well-known/acme-challenge/x", listener="web")
        assert status == 301
    finally:
        other.stop()


def test_odd_files_in_the_data_directory_are_refused_not_fatal(acme_env, tmp_path):
    """From an outside attack: a directory where account.key or cert.pem should be aborted the
    process (a C++ stream threw), and a FIFO there hung the start."""
    pki, pebble, start = acme_env
    data = str(tmp_path / "data")
    d = store_dir(data, pebble)
    os.makedirs(os.path.join(d, "cert.pem"))
    os.mkfifo(os.path.join(d, "key.pem"))
    os.makedirs(os.path.join(os.path.dirname(d), "account.key"))
    c = start(acme_config(pebble, pki, data))  # pebble is not needed: the key stops the order
    c.wait_for(r"ACME: certificate for a\.citadel\.test not obtained \(.*account\.key: "
               r"Invalid argument\)")
    der, _ = served(pebble.tls_port, "a.citadel.test")  # the placeholder
    _, issuer, subject, _ = cert_facts(der)
    assert issuer == subject
    assert c.proc.poll() is None
