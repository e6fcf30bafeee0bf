"""The identity service (docs/identity.md) on the embedded store: sign-up, the token endpoint's
password and refresh_token grants, refresh rotation and reuse detection, sessions, revocation,
userinfo, JWKS and discovery. Tokens are checked with an independent implementation (Python's
cryptography), and forged with the stored keys to show what the service refuses."""
import base64
import concurrent.futures
import glob
import json
import os
import sqlite3
import time
import urllib.parse

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

from conftest import wait_until

ISSUER = "http://localhost/auth"


def identity_config(signup="open", extra="", issuer=ISSUER, workers=2):
    return f"""
    workers: {workers}
    listeners:
      - name: public
        address: 127.0.0.1:0
    admin:
      address: 127.0.0.1:0
    access_log: off
    services:
      identity:
        issuer: {issuer}
        signup: {signup}
        password: {{ memory: 8MiB, iterations: 1 }}
{extra}
    routes:
      - match: {{ path_prefix: /auth/ }}
        to: {{ service: identity }}
      - to: {{ respond: {{ status: 200, body: "app" }} }}
    """


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Client:
    def __init__(self, c):
        self.c = c

    def json(self, method, path, obj=None, headers=None, raw=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        body = raw if raw is not None else (json.dumps(obj) if obj is not None else None)
        status, hdrs, data = self.c.request(method, path, body=body, headers=h)
        return status, hdrs, (json.loads(data) if data else None)

    def form(self, path, fields, headers=None):
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        h.update(headers or {})
        body = fields if isinstance(fields, str) else urllib.parse.urlencode(fields)
        status, hdrs, data = self.c.request("POST", path, body=body, headers=h)
        return status, hdrs, json.loads(data)

    def signup(self, email, password="correct horse battery", **extra):
        return self.json("POST", "/auth/signup", dict(email=email, password=password, **extra))

    def password_grant(self, email, password="correct horse battery", **extra):
        return self.form("/auth/token", dict(grant_type="password", username=email,
                                             password=password, **extra))

    def refresh(self, token):
        return self.form("/auth/token", dict(grant_type="refresh_token", refresh_token=token))

    def bearer(self, method, path, token):
        status, hdrs, data = self.c.request(method, path,
                                            headers={"Authorization": "Bearer " + token})
        return status, hdrs, (json.loads(data) if data else None)


@pytest.fixture
def idp(citadel):
    c = citadel(identity_config())
    return Client(c)


def jwks_keys(cl):
    status, _, body = cl.json("GET", "/auth/jwks.json")
    assert status == 200
    return body["keys"]


def verify_independently(cl, token):
    """The token's EdDSA signature checked against the published JWKS by another library."""
    header, payload, sig = token.split(".")
    h = json.loads(b64d(header))
    key = [k for k in jwks_keys(cl) if k["kid"] == h["kid"]]
    assert len(key) == 1 and key[0]["kty"] == "OKP" and key[0]["crv"] == "Ed25519"
    assert "d" not in key[0]
    pub = Ed25519PublicKey.from_public_bytes(b64d(key[0]["x"]))
    pub.verify(b64d(sig), (header + "." + payload).encode())  # raises when it does not match
    return h, json.loads(b64d(payload))


def stored_private_key(c):
    db = sqlite3.connect(os.path.join(str(c.tmp_path), "data", "citadel.db"))
    try:
        kid, jwk = db.execute(
            "SELECT kid, jwk FROM identity_keys WHERE retired_at IS NULL").fetchone()
    finally:
        db.close()
    return kid, json.loads(jwk)


def forge(c, claims, header=None, key=None):
    kid, jwk = stored_private_key(c)
    h = {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}
    h.update(header or {})
    signing_input = b64e(json.dumps(h).encode()) + "." + b64e(json.dumps(claims).encode())
    priv = key or Ed25519PrivateKey.from_private_bytes(b64d(jwk["d"]))
    return signing_input + "." + b64e(priv.sign(signing_input.encode()))


def test_discovery_and_jwks_describe_the_service(idp):
    status, hdrs, doc = idp.json("GET", "/auth/.well-known/openid-configuration")
    assert status == 200 and hdrs["Content-Type"] == "application/json"
    assert doc["issuer"] == ISSUER
    assert doc["token_endpoint"] == ISSUER + "/token"
    assert doc["jwks_uri"] == ISSUER + "/jwks.json"
    assert set(doc["grant_types_supported"]) == {
        "password", "refresh_token", "urn:citadel:params:oauth:grant-type:mfa-otp"}
    keys = jwks_keys(idp)
    assert len(keys) == 1 and keys[0]["alg"] == "EdDSA" and keys[0]["use"] == "sig"
    assert set(keys[0]) == {"kty", "crv", "x", "kid", "alg", "use"}  # no private member
    status, hdrs, _ = idp.c.request("POST", "/auth/jwks.json")
    assert status == 405 and hdrs["Allow"] == "GET, HEAD"
    assert idp.c.request("GET", "/auth/nothing")[0] == 404
    assert idp.c.request("GET", "/elsewhere")[2] == b"app"


def test_signup_then_password_grant_issues_a_verifiable_access_token(idp):
    status, _, body = idp.signup("Alice@Example.com")
    assert status == 201 and body["email"] == "alice@example.com" and body["id"]
    status, hdrs, tok = idp.password_grant("alice@example.com")
    assert status == 200, tok
    assert hdrs["Cache-Control"] == "no-store" and hdrs["Pragma"] == "no-cache"
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 900 and tok["scope"] == "openid"
    assert len(tok["refresh_token"]) == 43
    header, claims = verify_independently(idp, tok["access_token"])
    assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt"
    assert claims["iss"] == ISSUER and claims["aud"] == ISSUER and claims["sub"] == body["id"]
    assert claims["exp"] - claims["iat"] == 900 and claims["nbf"] == claims["iat"]
    assert abs(claims["iat"] - time.time()) < 30
    assert claims["email"] == "alice@example.com" and claims["roles"] == [] and claims["sid"]
    assert len(claims["jti"]) == 22
    status, _, info = idp.bearer("GET", "/auth/userinfo", tok["access_token"])
    assert status == 200 and info == {"sub": body["id"], "email": "alice@example.com",
                                      "email_verified": False}
    # The same through the JSON login endpoint, case-blind email.
    status, _, tok2 = idp.json("POST", "/auth/login", {"email": "ALICE@example.COM",
                                                        "password": "correct horse battery"})
    assert status == 200 and tok2["refresh_token"] != tok["refresh_token"]


def test_signup_refuses_what_it_must(idp, citadel):
    assert idp.signup("bob@example.com")[0] == 201
    status, _, body = idp.signup("BOB@example.com")
    assert status == 409 and body["error"] == "email_taken"
    for bad in ["", "no-at-sign", "@example.com", "a@", "a b@example.com", "a@b@c",
                "x" * 250 + "@example.com"]:
        status, _, body = idp.signup(bad)
        assert status == 400 and body["error"] == "invalid_email", bad
    assert idp.signup("carol@example.com", password="short")[1:] and \
        idp.signup("carol@example.com", password="short")[0] == 400
    assert idp.signup("carol@example.com", password="p" * 1025)[0] == 400
    status, _, body = idp.json("POST", "/auth/signup", raw='{"email":"d@example.com",'
                               '"password":"correct horse battery","email":"e@example.com"}')
    assert status == 400 and body["error"] == "invalid_request"  # a member given twice
    assert idp.json("POST", "/auth/signup", raw="[1]")[0] == 400
    assert idp.json("POST", "/auth/signup", raw="{")[0] == 400
    status, _, _ = idp.json("POST", "/auth/signup", {"email": "f@example.com", "password": "x" * 9},
                            headers={"Content-Type": "text/plain"})
    assert status == 415
    status, _, _ = idp.json("POST", "/auth/signup", raw="x" * 70000)
    assert status == 413
    # Closed and invite-only.
    closed = Client(citadel(identity_config(signup="closed")))
    status, _, body = closed.signup("g@example.com")
    assert status == 403 and body["error"] == "signup_closed"


def test_invite_only_signup_takes_a_single_use_invitation(citadel):
    cl = Client(citadel(identity_config(signup="invite_only")))
    status, _, body = cl.signup("h@example.com")
    assert status == 403 and body["error"] == "invite_required"
    # The admin API that makes invitations comes with RBAC; here one is stored directly.
    db = sqlite3.connect(os.path.join(str(cl.c.tmp_path), "data", "citadel.db"))
    import hashlib
    digest = b64e(hashlib.sha256(b"invite-secret").digest())
    db.execute("INSERT INTO identity_invites (digest, email, expires_at) VALUES (?, ?, ?)",
               (digest, "h@example.com", int(time.time()) + 3600))
    db.commit()
    db.close()
    status, _, body = cl.signup("i@example.com", invite="invite-secret")  # for another email
    assert status == 403 and body["error"] == "invalid_invite"
    assert cl.signup("h@example.com", invite="invite-secret")[0] == 201
    status, _, body = cl.signup("h2@example.com", invite="invite-secret")
    assert status == 403 and body["error"] == "invalid_invite"


def test_token_endpoint_errors_follow_rfc_6749(idp):
    idp.signup("dan@example.com")
    status, _, body = idp.password_grant("dan@example.com", password="wrong password")
    assert status == 400 and body["error"] == "invalid_grant"
    status, _, unknown = idp.password_grant("nobody@example.com")
    assert status == 400 and unknown == body  # the same answer: nothing tells them apart
    status, _, body = idp.form("/auth/token", "grant_type=password&username=a&username=b")
    assert status == 400 and body["error"] == "invalid_request"
    status, _, body = idp.form("/auth/token", "grant_type=password&username=%zz")
    assert status == 400 and body["error"] == "invalid_request"
    status, _, body = idp.form("/auth/token", {"grant_type": "implicit"})
    assert status == 400 and body["error"] == "unsupported_grant_type"
    status, _, body = idp.form("/auth/token", {})
    assert status == 400 and body["error"] == "invalid_request"
    status, _, body = idp.password_grant("dan@example.com", scope="openid admin")
    assert status == 400 and body["error"] == "invalid_scope"
    status, _, body = idp.json("POST", "/auth/token", {"grant_type": "password"})
    assert status == 400 and body["error"] == "invalid_request"  # not a form
    status, hdrs, _ = idp.c.request("GET", "/auth/token")
    assert status == 405 and hdrs["Allow"] == "POST"
    status, _, body = idp.refresh("not-a-token")
    assert status == 400 and body["error"] == "invalid_grant"
    status, _, tok = idp.password_grant("dan@example.com", scope="openid offline_access")
    assert status == 200 and tok["scope"] == "openid offline_access"


def test_refresh_rotates_and_reuse_revokes_the_whole_session(idp):
    idp.signup("erin@example.com")
    _, _, first = idp.password_grant("erin@example.com")
    status, _, second = idp.refresh(first["refresh_token"])
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    verify_independently(idp, second["access_token"])
    status, _, third = idp.refresh(second["refresh_token"])
    assert status == 200
    # An old token again: someone holds a copy. The session ends for both holders.
    status, _, body = idp.refresh(first["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant" and "revoked" in \
        body["error_description"]
    status, _, body = idp.refresh(third["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    status, hdrs, body = idp.bearer("GET", "/auth/userinfo", third["access_token"])
    assert status == 401 and body["error"] == "invalid_token"
    assert hdrs["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert idp.c.metric('citadel_identity_events_total{event="refresh_reuse",outcome="failure"}') \
        == 1


def test_concurrent_use_of_one_refresh_token_yields_at_most_one_successor(idp):
    idp.signup("fay@example.com")
    _, _, tok = idp.password_grant("fay@example.com")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: idp.refresh(tok["refresh_token"]), range(16)))
    ok = [r for r in results if r[0] == 200]
    assert len(ok) <= 1
    assert all(r[2]["error"] == "invalid_grant" for r in results if r[0] != 200)
    # The reuse revoked the session: the one successor is dead too.
    for r in ok:
        assert idp.refresh(r[2]["refresh_token"])[0] == 400


def test_sessions_are_listed_and_revoked_one_or_all(idp):
    idp.signup("gus@example.com")
    _, _, a = idp.password_grant("gus@example.com")
    _, _, b = idp.password_grant("gus@example.com")
    status, _, listed = idp.bearer("GET", "/auth/sessions", a["access_token"])
    assert status == 200 and len(listed["sessions"]) == 2
    current = [s for s in listed["sessions"] if s["current"]]
    other = [s for s in listed["sessions"] if not s["current"]]
    assert len(current) == 1 and current[0]["client_address"] == "127.0.0.1"
    assert current[0]["user_agent"] == "" or isinstance(current[0]["user_agent"], str)
    status, _, body = idp.bearer("DELETE", "/auth/sessions/" + other[0]["id"], a["access_token"])
    assert status == 200 and body == {"revoked": 1}
    assert idp.refresh(b["refresh_token"])[0] == 400
    assert idp.bearer("GET", "/auth/userinfo", b["access_token"])[0] == 401
    status, _, body = idp.bearer("DELETE", "/auth/sessions/" + other[0]["id"], a["access_token"])
    assert status == 404
    # Another user's session id cannot be revoked.
    idp.signup("hal@example.com")
    _, _, h = idp.password_grant("hal@example.com")
    _, _, hs = idp.bearer("GET", "/auth/sessions", h["access_token"])
    status, _, _ = idp.bearer("DELETE", "/auth/sessions/" + hs["sessions"][0]["id"],
                              a["access_token"])
    assert status == 404
    assert idp.bearer("GET", "/auth/userinfo", h["access_token"])[0] == 200
    # All of them, the caller's own included.
    _, _, c = idp.password_grant("gus@example.com")
    status, _, body = idp.bearer("DELETE", "/auth/sessions", a["access_token"])
    assert status == 200 and body == {"revoked": 2}
    assert idp.bearer("GET", "/auth/sessions", a["access_token"])[0] == 401
    assert idp.refresh(c["refresh_token"])[0] == 400


def test_revocation_endpoint_rfc_7009(idp):
    idp.signup("ivy@example.com")
    _, _, tok = idp.password_grant("ivy@example.com")
    status, _, body = idp.form("/auth/revoke", {"token": "unknown"})
    assert status == 200 and body == {}
    status, _, body = idp.form("/auth/revoke", {"token": tok["refresh_token"]})
    assert status == 200
    assert idp.refresh(tok["refresh_token"])[0] == 400
    assert idp.bearer("GET", "/auth/userinfo", tok["access_token"])[0] == 401
    _, _, tok = idp.password_grant("ivy@example.com")
    status, _, _ = idp.json("POST", "/auth/logout", {"refresh_token": tok["refresh_token"]})
    assert status == 200 and idp.refresh(tok["refresh_token"])[0] == 400


def test_forged_and_altered_access_tokens_are_refused(idp):
    _, _, user = idp.signup("jo@example.com")
    _, _, tok = idp.password_grant("jo@example.com")
    good = tok["access_token"]
    _, claims = verify_independently(idp, good)
    now = int(time.time())

    def refused(token, why):
        status, hdrs, body = idp.bearer("GET", "/auth/userinfo", token)
        assert status == 401, (why, body)
        assert body["error"] == "invalid_token", why
        assert hdrs["WWW-Authenticate"] == 'Bearer error="invalid_token"'

    assert idp.bearer("GET", "/auth/userinfo", forge(idp.c, claims))[0] == 200  # the control
    h, p, s = good.split(".")
    refused(h + "." + p + "." + s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1], "signature")
    other = dict(claims, sub="someone-else")
    refused(h + "." + b64e(json.dumps(other).encode()) + "." + s, "payload swapped")
    none = b64e(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    refused(none + "." + p + ".", "alg none")
    # HS256 with the public key as the HMAC secret (the classic confusion).
    import hmac
    import hashlib
    kid, jwk = stored_private_key(idp.c)
    hs_head = b64e(json.dumps({"alg": "HS256", "kid": kid}).encode())
    for secret in (b64d(jwk["x"]), json.dumps({"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]})
                   .encode()):
        mac = hmac.new(secret, (hs_head + "." + p).encode(), hashlib.sha256).digest()
        refused(hs_head + "." + p + "." + b64e(mac), "HS256 with the public key")
    refused(forge(idp.c, dict(claims, exp=now - 3600, iat=now - 4000, nbf=now - 4000)), "expired")
    refused(forge(idp.c, dict(claims, nbf=now + 3600)), "nbf ahead")
    refused(forge(idp.c, dict(claims, iat=now + 3600, exp=now + 4000)), "issued in the future")
    refused(forge(idp.c, dict(claims, aud="https://other.example")), "audience")
    refused(forge(idp.c, dict(claims, iss="https://evil.example/auth")), "issuer")
    refused(forge(idp.c, dict(claims, exp=now + 86400)), "lifetime over the configured one")
    refused(forge(idp.c, claims, header={"kid": "unknown"}), "unknown kid")
    refused(forge(idp.c, claims, key=Ed25519PrivateKey.generate()), "another key")
    refused(forge(idp.c, dict(claims, pad="x" * 20000)), "oversized")
    dup = b64e(('{"sub":"%s","sub":"x","iss":"%s","aud":"%s","exp":%d,"iat":%d,"sid":"%s"}' % (
        user["id"], ISSUER, ISSUER, now + 600, now, claims["sid"])).encode())
    kid_head = b64e(json.dumps({"alg": "EdDSA", "kid": kid}).encode())
    priv = Ed25519PrivateKey.from_private_bytes(b64d(jwk["d"]))
    refused(kid_head + "." + dup + "." + b64e(priv.sign((kid_head + "." + dup).encode())),
            "duplicate claims")
    refused(forge(idp.c, {k: v for k, v in claims.items() if k != "sid"}), "no session")
    status, hdrs, body = idp.c.request("GET", "/auth/userinfo")
    assert status == 401 and hdrs["WWW-Authenticate"] == "Bearer"


def test_keys_and_accounts_survive_a_restart_and_nothing_secret_is_stored_or_logged(citadel):
    c = citadel(identity_config())
    cl = Client(c)
    password = "a very secret passphrase"
    cl.signup("kim@example.com", password=password)
    _, _, tok = cl.password_grant("kim@example.com", password=password)
    _, _, rotated = cl.refresh(tok["refresh_token"])
    kid = jwks_keys(cl)[0]["kid"]
    cl.password_grant("kim@example.com", password="wrong " + password)
    c.stop()
    d = citadel(identity_config())
    cl2 = Client(d)
    assert jwks_keys(cl2)[0]["kid"] == kid
    assert cl2.bearer("GET", "/auth/userinfo", rotated["access_token"])[0] == 200
    assert cl2.refresh(rotated["refresh_token"])[0] == 200
    d.stop()
    data = os.path.join(str(c.tmp_path), "data")
    assert oct(os.stat(data).st_mode & 0o777) == "0o700"
    assert oct(os.stat(os.path.join(data, "citadel.db")).st_mode & 0o777) == "0o600"
    secrets = [password, tok["refresh_token"], rotated["refresh_token"], tok["access_token"]]
    for path in glob.glob(os.path.join(data, "citadel.db*")):
        with open(path, "rb") as f:
            content = f.read()
        for s in secrets:
            assert s.encode() not in content, (path, s[:10])
    for line in c.snapshot_lines() + d.snapshot_lines():
        for s in secrets:
            assert s not in line


def test_password_parameters_changed_rehash_at_the_next_login(citadel):
    c = citadel(identity_config())
    cl = Client(c)
    cl.signup("lee@example.com")
    db_path = os.path.join(str(c.tmp_path), "data", "citadel.db")

    def stored():
        db = sqlite3.connect(db_path)
        try:
            return db.execute("SELECT password_hash FROM identity_users").fetchone()[0]
        finally:
            db.close()
    assert "m=8192,t=1" in stored()
    c.write_config(identity_config().replace("memory: 8MiB, iterations: 1",
                                             "memory: 9MiB, iterations: 2"))
    status, text = c.admin("POST", "/config/reload")
    assert status == 200, text
    assert cl.password_grant("lee@example.com")[0] == 200
    wait_until(lambda: "m=9216,t=2" in stored(), what="the rehash")
    assert cl.password_grant("lee@example.com")[0] == 200


def test_config_errors_name_file_and_line(citadel, tmp_path):
    import subprocess
    from conftest import CITADEL
    bad = {
        "issuer: http://localhost/auth": "",
        "issuer: http://example.com/auth": "expected an https URL",
        "issuer: https://example.com/auth?x=1": "expected an https URL",
    }
    for replace, why in bad.items():
        cfg = identity_config().replace("issuer: " + ISSUER, replace if why else "")
        path = os.path.join(str(tmp_path), "bad.yaml")
        with open(path, "w") as f:
            import textwrap
            f.write(textwrap.dedent(cfg))
        r = subprocess.run([CITADEL, "validate", "-c", path], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1, r.stdout
        assert (why or "needs `issuer`") in r.stderr, r.stderr
        assert "bad.yaml:" in r.stderr
    cfg = identity_config(extra="        signup_mode: open")
    path = os.path.join(str(tmp_path), "bad.yaml")
    with open(path, "w") as f:
        import textwrap
        f.write(textwrap.dedent(cfg))
    r = subprocess.run([CITADEL, "validate", "-c", path], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1 and "signup_mode" in r.stderr


def grant_from(c, source, email, password="correct horse battery"):
    """The password grant from another loopback address (127.0.0.0/8 is all loopback)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("POST", "/auth/token", body=urllib.parse.urlencode(
            {"grant_type": "password", "username": email, "password": password}),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), json.loads(r.read())
    finally:
        conn.close()


def throttle_rows(c):
    db = sqlite3.connect(os.path.join(str(c.tmp_path), "data", "citadel.db"))
    try:
        return {k: (f, b) for k, f, b in db.execute(
            "SELECT key, failures, blocked_until FROM identity_throttle")}
    finally:
        db.close()


def test_failed_logins_throttle_one_address_without_locking_the_user_out(idp):
    idp.signup("pat@example.com")
    for _ in range(5):
        status, _, body = grant_from(idp.c, "127.0.0.1", "pat@example.com", "wrong guess")
        assert status == 400 and body["error"] == "invalid_grant"
    # The fifth failure blocks this address for this account, even with the right password,
    # before any hashing.
    status, hdrs, body = grant_from(idp.c, "127.0.0.1", "pat@example.com")
    assert status == 429 and body["error"] == "too_many_attempts", body
    assert 1 <= int(hdrs["Retry-After"]) <= 30
    # The user, from elsewhere, is not locked out; the success clears the account's count.
    status, _, _ = grant_from(idp.c, "127.0.0.2", "pat@example.com")
    assert status == 200
    assert grant_from(idp.c, "127.0.0.1", "pat@example.com")[0] == 429
    rows = throttle_rows(idp.c)
    assert "acct:pat@example.com" not in rows and "pair:pat@example.com|127.0.0.2" not in rows
    assert rows["pair:pat@example.com|127.0.0.1"][0] == 5
    # Another account from the first address is not affected.
    idp.signup("quinn@example.com")
    assert grant_from(idp.c, "127.0.0.1", "quinn@example.com")[0] == 200
    assert idp.c.metric('citadel_identity_events_total{event="login",outcome="throttled"}') == 2


def test_guesses_spread_over_addresses_slow_the_account_for_a_bounded_time(idp):
    idp.signup("ray@example.com")
    for i in range(20):
        status, _, _ = grant_from(idp.c, "127.0.0.%d" % (10 + i), "ray@example.com", "guess")
        assert status == 400
    status, hdrs, _ = grant_from(idp.c, "127.0.0.99", "ray@example.com")
    assert status == 429 and int(hdrs["Retry-After"]) <= 60  # the account's first step: 60 s
    _, blocked = throttle_rows(idp.c)["acct:ray@example.com"]
    assert blocked - time.time() <= 60
    # Unknown accounts are throttled the same way (nothing tells them apart).
    for _ in range(5):
        grant_from(idp.c, "127.0.0.3", "nobody@example.com", "x")
    assert grant_from(idp.c, "127.0.0.3", "nobody@example.com", "x")[0] == 429


def test_concurrent_failures_all_count(idp):
    idp.signup("sam@example.com")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: grant_from(idp.c, "127.0.0.4", "sam@example.com",
                                                     "wrong"), range(12)))
    assert all(r[0] in (400, 429) for r in results)
    rows = throttle_rows(idp.c)
    # Every attempt that reached the password check was counted (none lost to a race).
    checked = sum(1 for r in results if r[0] == 400)
    assert rows["pair:sam@example.com|127.0.0.4"][0] == checked >= 5
