"""The identity admin API (RBAC, users, API keys, sessions, invitations) and `citadel admin
create`, the first administrator's bootstrap: who may call it (401 versus 403), what each call
changes, and what API keys may do over their lifetime (scopes bounded by the owner, expiry,
rotation with overlap, revocation)."""
import os
import sqlite3
import subprocess
import textwrap
import time

import pytest

from conftest import CITADEL
from test_identity import Client, identity_config, verify_independently


def admin_create(tmp_path, config, email="boss@example.com", password="correct horse battery"):
    path = os.path.join(str(tmp_path), "citadel.yaml")
    with open(path, "w") as f:
        f.write(textwrap.dedent(config))
    return subprocess.run([CITADEL, "admin", "create", "-c", path, "--email", email],
                          input=password + "\n", capture_output=True, text=True, timeout=30)


class Admin:
    def __init__(self, cl, key):
        self.cl, self.key = cl, key

    def __call__(self, method, path, obj=None, key=None):
        return self.cl.json(method, "/auth/admin" + path, obj,
                            headers={"Authorization": "Bearer " + (key or self.key)})


@pytest.fixture
def admin(citadel, tmp_path):
    cfg = identity_config(signup="invite_only")
    r = admin_create(tmp_path, cfg)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key.startswith("citadel_") and len(key) == 64
    assert "with the admin role" in r.stderr and key not in r.stderr
    return Admin(Client(citadel(cfg)), key)


def test_the_bootstrap_key_administers_and_anonymous_or_wrong_credentials_do_not(admin):
    status, _, body = admin("GET", "/roles")
    assert status == 200 and body["roles"] == [
        {"name": "admin", "description": "every permission", "permissions": ["*"]}]
    status, hdrs, body = admin.cl.json("GET", "/auth/admin/roles")
    assert status == 401 and hdrs["WWW-Authenticate"] == "Bearer"
    forged = admin.key[:-4] + ("AAAA" if admin.key[-4:] != "AAAA" else "BBBB")
    status, _, body = admin("GET", "/roles", key=forged)
    assert status == 401 and body["error"] == "invalid_token"
    assert admin("GET", "/roles", key="citadel_" + "a" * 56)[0] == 401
    assert admin("GET", "/nothing")[0] == 404
    status, hdrs, _ = admin("POST", "/roles")
    assert status == 405 and hdrs["Allow"] == "GET"
    # The admin's own login works too: an access token of a live session with the role.
    status, _, tok = admin.cl.password_grant("boss@example.com")
    assert status == 200
    assert verify_independently(admin.cl, tok["access_token"])[1]["roles"] == ["admin"]
    assert admin("GET", "/users", key=tok["access_token"])[0] == 200
    admin.cl.form("/auth/revoke", {"token": tok["refresh_token"]})
    assert admin("GET", "/users", key=tok["access_token"])[0] == 401


def test_roles_users_and_the_403_of_a_user_without_the_permission(admin):
    status, _, body = admin("PUT", "/roles/support", {"description": "helps",
                                                      "permissions": ["tickets:*", "users:read"]})
    assert status == 200
    assert {"name": "support", "description": "helps",
            "permissions": ["tickets:*", "users:read"]} in body["roles"]
    for bad in (["no-colon"], ["a:b:c"], ["ord*:read"], [""], "tickets:*", [1]):
        assert admin("PUT", "/roles/x", {"permissions": bad})[0] == 400, bad
    assert admin("PUT", "/roles/admin", {"permissions": []})[0] == 409
    assert admin("DELETE", "/roles/admin")[0] == 409
    assert admin("PUT", "/roles/bad%20name", {"permissions": []})[0] in (400, 404)
    status, _, user = admin("POST", "/users", {"email": "Sue@Example.com",
                                               "password": "correct horse battery",
                                               "roles": ["support"]})
    assert status == 201 and user["email"] == "sue@example.com" and user["roles"] == ["support"]
    assert admin("POST", "/users", {"email": "sue@example.com",
                                    "password": "correct horse battery"})[0] == 409
    status, _, body = admin("POST", "/users", {"email": "tim@example.com",
                                               "password": "correct horse battery",
                                               "roles": ["nope"]})
    assert status == 400 and body["error"] == "unknown_role"
    assert admin("GET", "/users/" + user["id"])[2]["roles"] == ["support"]
    # Sue logs in; her token carries her role; the admin API says 403, not 401.
    _, _, tok = admin.cl.password_grant("sue@example.com")
    assert verify_independently(admin.cl, tok["access_token"])[1]["roles"] == ["support"]
    status, hdrs, body = admin("GET", "/users", key=tok["access_token"])
    assert status == 403 and body["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in hdrs["WWW-Authenticate"]
    # Roles replaced; disabling ends her sessions at once.
    status, _, patched = admin("PATCH", "/users/" + user["id"], {"roles": [], "mfa_required": True})
    assert status == 200 and patched["roles"] == [] and patched["mfa_required"] is True
    status, _, patched = admin("PATCH", "/users/" + user["id"], {"disabled": True})
    assert status == 200 and patched["disabled"] is True
    assert admin.cl.refresh(tok["refresh_token"])[0] == 400
    assert admin.cl.password_grant("sue@example.com")[0] == 400
    assert admin("PATCH", "/users/nobody", {"disabled": True})[0] == 404
    assert admin("PATCH", "/users/" + user["id"], {"disabled": "yes"})[0] == 400
    # Deleting a role takes it from its users; deleting a user removes everything of theirs.
    assert admin("DELETE", "/roles/support")[0] == 200
    assert admin("DELETE", "/roles/support")[0] == 404
    assert admin("DELETE", "/users/" + user["id"])[0] == 200
    assert admin("GET", "/users/" + user["id"])[0] == 404
    listed = admin("GET", "/users?limit=1")[2]
    assert len(listed["users"]) == 1 and "next_after" in listed


def test_admin_sessions_and_invitations(admin):
    status, _, inv = admin("POST", "/invites", {"email": "new@example.com", "expires_in": 3600})
    assert status == 201 and inv["expires_at"] > time.time()
    assert admin.cl.signup("new@example.com", invite=inv["invite"])[0] == 201
    assert admin.cl.signup("new2@example.com", invite=inv["invite"])[0] == 403
    _, _, a = admin.cl.password_grant("new@example.com")
    _, _, b = admin.cl.password_grant("new@example.com")
    uid = verify_independently(admin.cl, a["access_token"])[1]["sub"]
    status, _, listed = admin("GET", "/users/%s/sessions" % uid)
    assert status == 200 and len(listed["sessions"]) == 2
    assert admin("DELETE", "/users/%s/sessions" % uid)[2] == {"revoked": 2}
    assert admin.cl.refresh(a["refresh_token"])[0] == 400
    assert admin.cl.refresh(b["refresh_token"])[0] == 400


def test_api_keys_scopes_expiry_rotation_and_revocation(admin):
    # A key scoped below the admin permission cannot administer, even though its owner can.
    status, _, narrow = admin("POST", "/api-keys", {"name": "ci", "scopes": ["orders:read"]})
    assert status == 201 and narrow["key"].startswith("citadel_" + narrow["prefix"] + "_")
    assert admin("GET", "/roles", key=narrow["key"])[0] == 403
    # A key whose scopes allow it, owned by a user whose roles do not, cannot either.
    _, _, plain = admin("POST", "/users", {"email": "kay@example.com",
                                           "password": "correct horse battery"})
    status, _, wide = admin("POST", "/api-keys", {"name": "k", "scopes": ["identity:admin"],
                                                  "user_id": plain["id"]})
    assert status == 201
    assert admin("GET", "/roles", key=wide["key"])[0] == 403
    assert admin("POST", "/api-keys", {"name": "k", "scopes": ["*"],
                                       "user_id": "nobody"})[0] == 400
    for bad in ({"name": "", "scopes": ["*"]}, {"name": "k", "scopes": []},
                {"name": "k", "scopes": ["*"], "expires_in": 5}):
        assert admin("POST", "/api-keys", bad)[0] == 400, bad
    status, _, ops = admin("POST", "/api-keys", {"name": "ops", "scopes": ["identity:admin"],
                                                 "expires_in": 3600})
    assert status == 201 and ops["expires_at"] - time.time() > 3500
    assert admin("GET", "/roles", key=ops["key"])[0] == 200
    # Listed without secrets, with the last use.
    keys = admin("GET", "/api-keys")[2]["api_keys"]
    assert all("key" not in k for k in keys)
    assert [k for k in keys if k["id"] == ops["id"]][0]["last_used_at"] is not None
    # Rotation: the new key works at once, the old one for the overlap, then not.
    status, _, new = admin("POST", "/api-keys/%s/rotate" % ops["id"], {"overlap": 60})
    assert status == 201 and new["rotated_from"] == ops["id"] and new["key"] != ops["key"]
    assert admin("GET", "/roles", key=new["key"])[0] == 200
    assert admin("GET", "/roles", key=ops["key"])[0] == 200
    db = sqlite3.connect(os.path.join(str(admin.cl.c.tmp_path), "data", "citadel.db"))
    db.execute("UPDATE identity_api_keys SET expires_at = ? WHERE id = ?",
               (int(time.time()) - 1, ops["id"]))
    db.commit()
    db.close()
    status, _, body = admin("GET", "/roles", key=ops["key"])
    assert status == 401 and "expired" in body["error_description"]
    assert admin("POST", "/api-keys/%s/rotate" % ops["id"])[0] == 409
    # Revocation is at once.
    assert admin("DELETE", "/api-keys/" + new["id"])[0] == 200
    status, _, body = admin("GET", "/roles", key=new["key"])
    assert status == 401 and "revoked" in body["error_description"]
    assert admin("DELETE", "/api-keys/" + new["id"])[0] == 404
    # Keys are stored as digests only.
    db = sqlite3.connect(os.path.join(str(admin.cl.c.tmp_path), "data", "citadel.db"))
    stored = " ".join(str(r) for r in db.execute("SELECT * FROM identity_api_keys"))
    db.close()
    for k in (narrow, wide, ops, new):
        # The secret follows "citadel_" and the 12-character prefix; it may hold "_" itself.
        assert k["key"] not in stored and k["key"][len("citadel_") + 13:] not in stored


def test_admin_create_refuses_bad_input_and_promotes_an_existing_account(citadel, tmp_path):
    cfg = identity_config()
    r = admin_create(tmp_path, cfg, email="not-an-email")
    assert r.returncode == 1 and "not an email" in r.stderr
    r = admin_create(tmp_path, cfg, password="short")
    assert r.returncode == 1 and "password" in r.stderr
    c = citadel(cfg)
    cl = Client(c)
    cl.signup("ann@example.com", password="her own password")
    c.stop()
    r = admin_create(tmp_path, cfg, email="ann@example.com", password="ignored")
    assert r.returncode == 0 and "Gave ann@example.com" in r.stderr
    c2 = citadel(cfg)
    cl2 = Client(c2)
    status, _, tok = cl2.password_grant("ann@example.com", password="her own password")
    assert status == 200
    assert verify_independently(cl2, tok["access_token"])[1]["roles"] == ["admin"]
    assert Admin(cl2, r.stdout.strip())("GET", "/roles")[0] == 200
