"""TOTP second factors (RFC 6238) in the identity service: enrolment with a QR code, the login
challenge and the mfa-otp grant, replay and drift, recovery codes, attempts, MFA required by
role, removal. Codes are computed here with an independent TOTP implementation."""
import base64
import hashlib
import hmac
import os
import shutil
import sqlite3
import struct
import subprocess
import time

import pytest

from test_identity import Client, ISSUER, identity_config, verify_independently

GRANT = "urn:citadel:params:oauth:grant-type:mfa-otp"


def totp(secret_b32, at=None, step_offset=0):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((at or time.time()) // 30) + step_offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000
    return "%06d" % code


def db(c):
    return sqlite3.connect(os.path.join(str(c.tmp_path), "data", "citadel.db"))


def bearer_json(cl, method, path, token, obj=None):
    return cl.json(method, path, obj, headers={"Authorization": "Bearer " + token})


def enrol(cl, token):
    status, _, body = bearer_json(cl, "POST", "/auth/mfa/totp", token)
    assert status == 200, body
    secret = body["secret"]
    # A code of the step before the current one: the test never races a step boundary, and
    # the window (one step) accepts it; login then uses the current step, a later one.
    status, _, conf = bearer_json(cl, "POST", "/auth/mfa/totp/confirm", token,
                                  {"code": totp(secret, step_offset=-1)})
    assert status == 200, conf
    return secret, body, conf["recovery_codes"]


def challenge(cl, email="m@example.com"):
    status, _, body = cl.password_grant(email)
    assert status == 403 and body["error"] == "mfa_required", body
    return body["mfa_token"]


def mfa(cl, mfa_token, **kw):
    return cl.form("/auth/token", dict(grant_type=GRANT, mfa_token=mfa_token, **kw))


@pytest.fixture
def enrolled(citadel):
    c = citadel(identity_config())
    cl = Client(c)
    cl.signup("m@example.com")
    _, _, tok = cl.password_grant("m@example.com")
    secret, enrolment, codes = enrol(cl, tok["access_token"])
    return cl, secret, enrolment, codes


def test_enrolment_gives_a_uri_a_scannable_qr_code_and_recovery_codes(enrolled):
    cl, secret, enrolment, codes = enrolled
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20
    uri = enrolment["otpauth_uri"]
    assert uri.startswith("otpauth://totp/Citadel:m%40example.com?secret=" + secret) or \
        uri.startswith("otpauth://totp/Citadel:m@example.com?secret=" + secret), uri
    svg = enrolment["qr_svg"]
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    if shutil.which("zbarimg"):
        assert decode_qr(svg, cl.c.tmp_path) == uri
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 11 and c[5] == "-" for c in codes)
    status, _, body = bearer_json(cl, "POST", "/auth/mfa/totp",
                                  cl.password_grant("m@example.com")[2].get("access_token", "x"))
    assert status == 401  # the login is challenged now: no access token came back
    # Nothing secret is kept in the clear beside the TOTP secret itself.
    con = db(cl.c)
    stored = [r[0] for r in con.execute("SELECT digest FROM identity_recovery_codes")]
    con.close()
    assert len(stored) == 10 and not set(c.replace("-", "") for c in codes) & set(stored)


def decode_qr(svg, tmp):
    """Rasterises the SVG's unit squares into a PBM and reads it with zbarimg."""
    import re
    size = int(re.search(r'viewBox="0 0 (\d+) ', svg).group(1))
    dark = {(int(x), int(y)) for x, y in re.findall(r"M(\d+),(\d+)h1v1h-1z", svg)}
    scale = 8
    rows = []
    for y in range(size * scale):
        rows.append(" ".join("1" if (x // scale, y // scale) in dark else "0"
                             for x in range(size * scale)))
    path = os.path.join(str(tmp), "qr.pbm")
    with open(path, "w") as f:
        f.write("P1\n%d %d\n%s\n" % (size * scale, size * scale, "\n".join(rows)))
    r = subprocess.run(["zbarimg", "-q", "--raw", path], capture_output=True, text=True,
                       timeout=30)
    return r.stdout.strip()


def test_login_needs_the_code_and_a_code_is_used_once(enrolled):
    cl, secret, _, _ = enrolled
    mt = challenge(cl)
    status, _, body = mfa(cl, mt, otp=totp(secret))
    assert status == 200, body
    _, claims = verify_independently(cl, body["access_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    # The same code again, with a fresh challenge: a replay.
    status, _, body2 = mfa(cl, challenge(cl), otp=totp(secret))
    assert status == 400 and "already used" in body2["error_description"]
    # The challenge itself is single-use.
    status, _, body3 = mfa(cl, mt, otp=totp(secret, step_offset=1))
    assert status == 400 and body3["error"] == "invalid_grant"
    # The next step's code (clock drift within the window) is accepted once.
    status, _, _ = mfa(cl, challenge(cl), otp=totp(secret, step_offset=1))
    assert status == 200
    # Refreshing keeps the second factor in the tokens.
    status, _, ref = cl.refresh(body["refresh_token"])
    assert status == 200 and verify_independently(cl, ref["access_token"])[1]["amr"] == \
        ["pwd", "otp", "mfa"]


def test_codes_outside_the_window_and_wrong_codes_are_refused_then_the_challenge_burns(enrolled):
    cl, secret, _, _ = enrolled
    mt = challenge(cl)
    assert mfa(cl, mt, otp=totp(secret, step_offset=-3))[0] == 400
    assert mfa(cl, mt, otp=totp(secret, step_offset=3))[0] == 400
    for _ in range(3):
        assert mfa(cl, mt, otp="000000" if totp(secret) != "000000" else "111111")[0] == 400
    # Five wrong codes count like five wrong passwords: this address is throttled now.
    status, hdrs, body = mfa(cl, mt, otp=totp(secret, step_offset=2))
    assert status == 429 and body["error"] == "too_many_attempts" and int(hdrs["Retry-After"]) > 0
    assert cl.password_grant("m@example.com")[0] == 429
    con = db(cl.c)
    con.execute("DELETE FROM identity_throttle")  # as if the wait had passed
    con.commit()
    con.close()
    # And the challenge has burnt: even the right code no longer opens it.
    status, _, body = mfa(cl, mt, otp=totp(secret, step_offset=2))
    assert status == 400 and "spent" in body["error_description"]
    assert mfa(cl, "no-such-challenge", otp=totp(secret))[0] == 400
    assert mfa(cl, mt)[0] == 400  # neither otp nor recovery_code
    # An expired challenge.
    mt2 = challenge(cl)
    con = db(cl.c)
    con.execute("UPDATE identity_mfa_challenges SET expires_at = 1")
    con.commit()
    con.close()
    assert mfa(cl, mt2, otp=totp(secret, step_offset=2))[0] == 400


def test_recovery_codes_are_single_use_and_forgiving_in_form(enrolled):
    cl, _, _, codes = enrolled
    status, _, body = mfa(cl, challenge(cl), recovery_code=codes[0].lower().replace("-", " "))
    assert status == 200, body
    status, _, body = mfa(cl, challenge(cl), recovery_code=codes[0])
    assert status == 400 and body["error"] == "invalid_grant"
    status, _, body = cl.json("POST", "/auth/login/mfa",
                              {"mfa_token": challenge(cl), "recovery_code": codes[1]})
    assert status == 200 and body["token_type"] == "Bearer"


def test_removing_the_second_factor_needs_a_current_code(enrolled):
    cl, secret, _, codes = enrolled
    _, _, tok = mfa(cl, challenge(cl), otp=totp(secret))
    at = tok["access_token"]
    status, _, body = bearer_json(cl, "DELETE", "/auth/mfa/totp", at, {"code": "123456"
                                  if totp(secret) != "123456" else "654321"})
    assert status == 400
    status, _, body = bearer_json(cl, "POST", "/auth/mfa/totp", at)
    assert status == 409 and body["error"] == "already_enrolled"
    status, _, body = bearer_json(cl, "DELETE", "/auth/mfa/totp", at,
                                  {"code": totp(secret, step_offset=1)})
    assert status == 200, body
    status, _, tok = cl.password_grant("m@example.com")
    assert status == 200 and "access_token" in tok
    assert mfa(cl, "x", recovery_code=codes[2])[0] == 400


def test_a_role_that_requires_mfa_makes_its_users_enrol_before_they_get_tokens(citadel):
    c = citadel(identity_config(extra="        mfa: { required_roles: [admin], label: Acme }"))
    cl = Client(c)
    _, _, user = cl.signup("root@example.com")
    con = db(c)
    con.execute("INSERT INTO identity_user_roles VALUES (?, 'admin')", (user["id"],))
    con.commit()
    con.close()
    status, _, body = cl.password_grant("root@example.com")
    assert status == 403 and body["error"] == "mfa_enrollment_required", body
    et = body["mfa_token"]
    # The enrolment challenge opens enrolment only.
    assert cl.bearer("GET", "/auth/userinfo", et)[0] == 401
    assert bearer_json(cl, "DELETE", "/auth/mfa/totp", et, {"code": "1"})[0] == 401
    status, _, enrolment = bearer_json(cl, "POST", "/auth/mfa/totp", et)
    assert status == 200 and enrolment["otpauth_uri"].startswith("otpauth://totp/Acme:")
    secret = enrolment["secret"]
    status, _, conf = bearer_json(cl, "POST", "/auth/mfa/totp/confirm", et,
                                  {"code": totp(secret, step_offset=-1)})
    assert status == 200 and len(conf["recovery_codes"]) == 10
    # Spent: the enrolment challenge cannot enrol again.
    assert bearer_json(cl, "POST", "/auth/mfa/totp", et)[0] == 401
    status, _, tok = mfa(cl, challenge(cl, "root@example.com"), otp=totp(secret))
    assert status == 200
    _, claims = verify_independently(cl, tok["access_token"])
    assert claims["roles"] == ["admin"] and "mfa" in claims["amr"]


def test_no_totp_secret_or_code_in_the_logs(enrolled):
    cl, secret, _, codes = enrolled
    mfa(cl, challenge(cl), otp=totp(secret))
    for line in cl.c.snapshot_lines():
        assert secret not in line
        for code in codes:
            assert code not in line
