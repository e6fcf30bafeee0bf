"""The jwt filter on a proxied route: tokens from the identity service (its JWKS fetched over
HTTP by each worker) and from a key file; forged claim headers removed; every refused token
gets 401 with the RFC 6750 challenge, and the upstream sees only what passed."""
import base64
import http.client
import json
import os
import time

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import free_port, wait_until
from test_identity import Client

UPSTREAM_ECHO = "echo"  # tests/integration/upstream.py: answers with the request it received


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def gateway_config(port, jwt_options, workers=2):
    issuer = "http://127.0.0.1:%d/auth" % port
    return f"""
    workers: {workers}
    listeners:
      - name: public
        address: 127.0.0.1:{port}
    admin:
      address: 127.0.0.1:0
    access_log: off
    services:
      identity:
        issuer: {issuer}
        password: {{ memory: 8MiB, iterations: 1 }}
    clusters:
      - name: app
        endpoints: [ "{{upstream}}" ]
    routes:
      - match: {{ path_prefix: /auth/ }}
        to: {{ service: identity }}
      - name: api
        match: {{ path_prefix: /api/ }}
        filters:
          - jwt:
{jwt_options}
        to: {{ cluster: app }}
    """


def identity_jwt(port, extra=""):
    issuer = "http://127.0.0.1:%d/auth" % port
    return f"""              issuer: {issuer}
              audiences: [{issuer}]
              jwks: {issuer}/jwks.json
              forward: {{ sub: X-User-Id, email: X-User-Email, roles: X-User-Roles }}
{extra}"""


def echo(c, path, headers=None):
    status, hdrs, body = c.request("GET", path, headers=headers or {})
    return status, hdrs, body


def seen_headers(body):
    """The request head the echo upstream received, as a dict of lower-case names."""
    data = json.loads(body)
    return {k.lower(): v for k, v in data["headers"]}


def start(citadel, upstreams, jwt_options_fn, workers=2):
    up = upstreams("echo")
    port = free_port()
    cfg = gateway_config(port, jwt_options_fn(port), workers).replace("{upstream}", up.address)
    return citadel(cfg), port


def login(c, email="u@example.com"):
    cl = Client(c)
    cl.signup(email)
    status, _, tok = cl.password_grant(email)
    assert status == 200
    return tok["access_token"]


def test_identity_tokens_pass_and_claims_are_forwarded_forged_ones_removed(citadel, upstreams):
    c, port = start(citadel, upstreams, identity_jwt)
    token = login(c)
    status, _, body = echo(c, "/api/x", {"Authorization": "Bearer " + token,
                                         "X-User-Id": "admin", "x-user-roles": "root"})
    assert status == 200, body
    seen = seen_headers(body)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert seen["x-user-id"] == claims["sub"]  # not the forged "admin"
    assert seen["x-user-email"] == "u@example.com"
    assert seen["x-user-roles"] == ""  # no roles: the empty list
    assert list(k for k in seen if k == "x-user-id") == ["x-user-id"]
    # Many requests on both workers: verified once per worker, then from the cache.
    for _ in range(20):
        assert echo(c, "/api/x", {"Authorization": "Bearer " + token})[0] == 200
    assert c.metric('citadel_jwt_cache_hits_total{route="api"}') >= 15
    assert c.metric('citadel_jwt_requests_total{route="api",outcome="allowed"}') == 21
    assert c.metric('citadel_jwt_jwks_fetches_total{outcome="success"}') in (1, 2)


def test_missing_and_bad_tokens_get_401_and_never_reach_the_upstream(citadel, upstreams):
    c, port = start(citadel, upstreams, identity_jwt)
    token = login(c)
    status, hdrs, _ = echo(c, "/api/x")
    assert status == 401 and hdrs["WWW-Authenticate"] == 'Bearer realm="citadel"'
    status, hdrs, _ = echo(c, "/api/x", {"Authorization": "Basic dTpw"})
    assert status == 401
    h, p, s = token.split(".")
    now = int(time.time())
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    other = Ed25519PrivateKey.generate()

    def signed(payload, header=None, key=other):
        hd = b64e(json.dumps(header or {"alg": "EdDSA", "kid": json.loads(
            base64.urlsafe_b64decode(h + "=="))["kid"]}).encode())
        pl = b64e(json.dumps(payload).encode())
        return hd + "." + pl + "." + b64e(key.sign((hd + "." + pl).encode()))
    bad = {
        "tampered signature": h + "." + p + "." + s[:-3] + ("AAA" if s[-3:] != "AAA" else "BBB"),
        "tampered payload": h + "." + b64e(json.dumps(dict(claims, sub="x")).encode()) + "." + s,
        "alg none": b64e(b'{"alg":"none"}') + "." + p + ".",
        "another key, same kid": signed(claims),
        "unknown kid": signed(claims, {"alg": "EdDSA", "kid": "nope"}),
        "garbage": "not.a.token",
        "oversized": "a" * 20000 + "." + p + "." + s,
    }
    for why, t in bad.items():
        status, hdrs, body = echo(c, "/api/x", {"Authorization": "Bearer " + t})
        assert status == 401, (why, body)
        assert 'error="invalid_token"' in hdrs["WWW-Authenticate"], why
    # Only the good one got through: count what the upstream saw.
    assert echo(c, "/api/x", {"Authorization": "Bearer " + token})[0] == 200
    assert c.metric('citadel_jwt_jwks_fetches_total{outcome="success"}') <= 4  # the unknown
    # kid refetched at most once per worker


def test_expired_audience_and_issuer_are_checked_with_a_key_file(citadel, upstreams, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
           "x": b64e(nums.x.to_bytes(32, "big")), "y": b64e(nums.y.to_bytes(32, "big"))}
    path = os.path.join(str(tmp_path), "keys.json")
    with open(path, "w") as f:
        json.dump({"keys": [jwk, {"kty": "oct", "k": "c2VjcmV0", "use": "enc"}]}, f)

    def es256(payload, kid="k1"):
        from cryptography.hazmat.primitives import hashes
        hd = b64e(json.dumps({"alg": "ES256", "kid": kid}).encode())
        pl = b64e(json.dumps(payload).encode())
        der = key.sign((hd + "." + pl).encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return hd + "." + pl + "." + b64e(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    opts = lambda port: f"""              issuer: https://issuer.example
              audiences: [api]
              jwks_file: {path}
              leeway: 5s
              query: access_token
              forward: {{ sub: X-Sub, scope: X-Scope, tenant: X-Tenant }}
"""
    c, _ = start(citadel, upstreams, opts)
    now = int(time.time())
    good = {"iss": "https://issuer.example", "aud": ["other", "api"], "sub": "s1",
            "exp": now + 300, "iat": now, "scope": "read write", "tenant": "a\r\nX-Evil: 1"}
    status, _, body = echo(c, "/api/x", {"Authorization": "Bearer " + es256(good)})
    assert status == 200, body
    seen = seen_headers(body)
    assert seen["x-sub"] == "s1" and seen["x-scope"] == "read write"
    assert "x-tenant" not in seen and "x-evil" not in seen  # a claim with CR LF is not forwarded
    assert echo(c, "/api/x?a=1&access_token=" + es256(good))[0] == 200
    for why, payload in {
        "expired": dict(good, exp=now - 10, iat=now - 100),
        "not yet": dict(good, nbf=now + 60),
        "audience": dict(good, aud="web"),
        "issuer": dict(good, iss="https://evil.example"),
        "no exp": {k: v for k, v in good.items() if k != "exp"},
        "exp as a string": dict(good, exp=str(now + 300)),
    }.items():
        status, _, _ = echo(c, "/api/x", {"Authorization": "Bearer " + es256(payload)})
        assert status == 401, why
    assert echo(c, "/api/x", {"Authorization": "Bearer " + es256(good, kid="k2")})[0] == 401
    # Within the leeway an expired token still passes.
    assert echo(c, "/api/x", {"Authorization": "Bearer " +
                              es256(dict(good, exp=now - 2, iat=now - 100))})[0] == 200


def test_a_jwks_server_that_is_down_answers_503_and_recovers(citadel, upstreams):
    up = upstreams("echo")
    dead = free_port()  # nothing listens here until the identity service below does
    port = free_port()
    issuer = "http://127.0.0.1:%d/auth" % dead
    opts = f"""              issuer: {issuer}
              jwks: {issuer}/jwks.json
"""
    cfg = gateway_config(port, opts, workers=1).replace("{upstream}", up.address)
    c = citadel(cfg)
    status, _, body = echo(c, "/api/x", {"Authorization": "Bearer a.b.c"})
    assert status == 503, body
    # Asked again at once: answered from the failure, the server is not hammered.
    for _ in range(5):
        assert echo(c, "/api/x", {"Authorization": "Bearer a.b.c"})[0] == 503
    assert c.metric('citadel_jwt_jwks_fetches_total{outcome="failure"}') == 1
    assert any("jwt: cannot fetch" in l for l in c.snapshot_lines())


def test_bad_jwt_options_are_refused_with_their_line(tmp_path):
    import subprocess
    import textwrap
    from conftest import CITADEL
    cases = {
        "              issuer: x\n": "exactly one of `jwks`",
        "              jwks: ftp://x/keys\n": "expected an http:// or https:// URL",
        "              jwks_file: /nonexistent/keys.json\n": "cannot read",
        "              jwks: http://x/k\n              algorithms: [none]\n": "unknown algorithm",
        "              jwks: http://x/k\n              forward: { sub: 'X Bad' }\n":
            "expected a header name",
    }
    for opts, why in cases.items():
        path = os.path.join(str(tmp_path), "bad.yaml")
        with open(path, "w") as f:
            f.write(textwrap.dedent(gateway_config(1, opts).replace("{upstream}",
                                                                    "127.0.0.1:1")))
        r = subprocess.run([CITADEL, "validate", "-c", path], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and why in r.stderr and "bad.yaml:" in r.stderr, (opts, r.stderr)
