"""Invariants 3 and 5: a restricted or controlled secret is served only under an unexpired grant
(revoke and expiry cut it off at once), and a grant never lasts longer than its tier's cap,
whatever --ttl says, whatever tier the secret is moved to, whatever the config later says."""

import json
import os
import time

import pytest

from coretools import grant_path, one_line_error
from installtree import Tree
from clawgate import config, grants

SHORT = {"controlled": "3s", "restricted": "2s", "root": "2s"}


def _grant(tree, name):
    with open(grant_path(tree, name), "rb") as handle:
        return grants._parse(handle.read(), name)._asdict()


def _wait_past(when):
    while time.time() < when + 0.05:
        time.sleep(max(0.0, when + 0.05 - time.time()))


@pytest.mark.parametrize("tier, cap", [("controlled", "4h"), ("restricted", "15m"), (None, "15m")])
def test_no_grant_no_value(tree, tier, cap):
    tree.set_secret("db/password", b"s3cret", tier=tier)
    result = tree.as_agent("broker", "get", "db/password")
    shown = tier or "restricted"  # a secret with no tier is restricted
    assert one_line_error(result, 3) == (
        f"clawgate: db/password: approval required ({shown}, grants last {cap}); "
        "ask the owner for a code, then: clawgate approve db/password CODE\n")
    assert result.stdout == b""
    one_line_error(tree.run("broker", "get", "db/password"), 3)  # the owner's get needs a grant too


def test_open_needs_no_grant(tree):
    tree.set_secret("public", b"hello", tier="open")
    assert tree.as_agent("broker", "get", "public").stdout == b"hello"
    result = tree.as_agent("approve", "public", tree.code())
    assert result.returncode == 0 and b"no approval needed" in result.stdout


@pytest.mark.parametrize("tier", ["controlled", "restricted"])
def test_grant_serves_then_revoke_cuts_off_at_once(tree, tier):
    tree.set_secret("k", b"v", tier=tier)
    tree.set_secret("other", b"w", tier=tier)
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    assert tree.as_agent("broker", "get", "k").stdout == b"v"
    one_line_error(tree.as_agent("broker", "get", "other"), 3)  # a grant is for one name
    result = tree.as_agent("revoke", "k")
    assert result.returncode == 0 and result.stdout == b"clawgate: k: revoked\n"
    one_line_error(tree.as_agent("broker", "get", "k"), 3)
    assert not os.path.exists(grant_path(tree, "k"))


def test_revoke_all_cuts_off_every_grant_and_the_root_session(tree):
    for name in ("a", "b/c"):
        tree.set_secret(name, b"v", tier="controlled")
    assert tree.as_agent("approve", "b/c", tree.code()).returncode == 0
    assert tree.as_agent("approve", "@root", tree.code()).returncode == 0
    now = time.time()  # a third grant without waiting for a third code: written as approve writes it
    grants.write(tree.config(), grants.Grant("a", "controlled", now, now + 600, tree.owner))
    assert tree.as_agent("broker", "get", "a").stdout == b"v"
    assert tree.as_agent("revoke", "--all").returncode == 0
    for name in ("a", "b/c"):
        one_line_error(tree.as_agent("broker", "get", name), 3)
    assert os.listdir(tree.state / "grants") == []


def test_expiry_cuts_off_at_once(tmp_path):
    tree = Tree(tmp_path, ttl=SHORT)
    tree.enroll_seed()
    tree.set_secret("k", b"v", tier="controlled")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    grant = _grant(tree, "k")
    assert grant["expires_at"] - grant["granted_at"] == 3
    assert tree.as_agent("broker", "get", "k").stdout == b"v"
    _wait_past(grant["expires_at"])
    one_line_error(tree.as_agent("broker", "get", "k"), 3)
    rows = json.loads(tree.as_agent("broker", "list", "--json").stdout)
    assert rows == [{"name": "k", "tier": "controlled", "access": "approval required", "expires_in": None,
                     "use_only": False}]
    assert json.loads(tree.as_agent("broker", "status", "--json").stdout)["grants"] == []


def test_expiry_boundary_in_process(tree):
    tree.set_secret("k", b"v")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    cfg, grant = tree.config(), _grant(tree, "k")
    assert grants.active(cfg, "k", grant["granted_at"]) is not None
    assert grants.active(cfg, "k", grant["expires_at"] - 0.001) is not None
    assert grants.active(cfg, "k", grant["expires_at"]) is None          # expired at its last instant
    assert grants.active(cfg, "k", grant["granted_at"] - 1) is None      # not valid before it was given


def test_a_grant_record_for_another_name_grants_nothing(tree):
    tree.set_secret("a", b"1")
    tree.set_secret("b", b"2")
    assert tree.as_agent("approve", "a", tree.code()).returncode == 0
    os.link(grant_path(tree, "a"), grant_path(tree, "b"))  # the record inside still says "a"
    one_line_error(tree.as_agent("broker", "get", "b"), 3)


# -- invariant 5: the caps ----------------------------------------------------------------------
@pytest.mark.parametrize("name, tier, cap", [("k", "controlled", 4 * 3600), ("k", "restricted", 900),
                                             ("@root", "root", 1800)])
@pytest.mark.parametrize("asked", ["10h", "999999999h", "241m", "14401s"])
def test_ttl_above_the_cap_is_cut_and_says_so(tree, name, tier, cap, asked):
    if name != "@root":
        tree.set_secret(name, b"v", tier=tier)
    result = tree.as_agent("approve", name, tree.code(), "--ttl", asked)
    assert result.returncode == 0, result.stderr
    grant = _grant(tree, name)
    assert grant["expires_at"] - grant["granted_at"] == cap
    cap_text = {14400: "4h", 900: "15m", 1800: "30m"}[cap]
    assert f"cut to the {tier} cap of {cap_text}".encode() in result.stdout
    assert f"for {cap_text} ".encode() in result.stdout


def test_ttl_below_the_cap_is_kept(tree):
    tree.set_secret("k", b"v", tier="controlled")
    result = tree.as_agent("approve", "k", tree.code(), "--ttl", "90s")
    grant = _grant(tree, "k")
    assert grant["expires_at"] - grant["granted_at"] == 90
    assert b"cut" not in result.stdout and b"granted for 1m30s" in result.stdout


def test_configured_caps_below_design_are_honoured(tmp_path):
    tree = Tree(tmp_path, ttl={"controlled": "10m", "restricted": "2m", "root": "1m"})
    tree.enroll_seed()
    tree.set_secret("k", b"v", tier="controlled")
    result = tree.as_agent("approve", "k", tree.code(), "--ttl", "4h")
    grant = _grant(tree, "k")
    assert grant["expires_at"] - grant["granted_at"] == 600
    assert b"cut to the controlled cap of 10m" in result.stdout


@pytest.mark.parametrize("tier, ttl", [("controlled", "5h"), ("restricted", "16m"), ("root", "31m"),
                                       ("restricted", "901s")])
def test_a_config_cannot_raise_a_cap_above_design(tmp_path, tier, ttl):
    tree = Tree(tmp_path, ttl={tier: ttl})
    err = one_line_error(tree.run("broker", "list"), 6)
    assert "exceeds" in err


@pytest.mark.parametrize("bad", ["0s", "-5m", "5", "m", "1.5h", "5d", "\u0663s"])
def test_a_bad_ttl_is_a_usage_error_and_spends_no_code(tree, bad):
    tree.set_secret("k", b"v")
    code = tree.code()
    one_line_error(tree.as_agent("approve", "k", code, "--ttl", bad), 2)
    assert tree.as_agent("approve", "k", code).returncode == 0  # the code was not spent


def test_moving_a_secret_to_a_stricter_tier_cuts_its_grant_to_the_new_cap(tmp_path):
    tree = Tree(tmp_path, ttl={"controlled": "1h", "restricted": "2s"})
    tree.enroll_seed()
    tree.set_secret("k", b"v", tier="controlled")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    granted_at = _grant(tree, "k")["granted_at"]
    assert tree.run("secrets", "tier", "k", "restricted").returncode == 0
    listed = json.loads(tree.as_agent("broker", "list", "--json").stdout)[0]
    assert listed["access"] == "granted" and listed["expires_in"] <= 2
    _wait_past(granted_at + 2)
    one_line_error(tree.as_agent("broker", "get", "k"), 3)
    assert json.loads(tree.as_agent("broker", "status", "--json").stdout)["grants"] == []


def test_a_grant_never_outlives_the_cap_in_force(tree):
    tree.set_secret("k", b"v", tier="controlled")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    cfg, grant = tree.config(), _grant(tree, "k")
    at = grant["granted_at"]
    assert grants.active(cfg, "k", at + 3 * 3600, "controlled") is not None
    assert grants.active(cfg, "k", at + 15 * 60 - 1, "restricted") is not None
    assert grants.active(cfg, "k", at + 15 * 60, "restricted") is None
    shorter = cfg._replace(ttl=dict(cfg.ttl, controlled=3600))  # the owner shortened the cap since
    assert grants.active(shorter, "k", at + 3599, "controlled") is not None
    assert grants.active(shorter, "k", at + 3600, "controlled") is None
    assert grants.active(cfg, "k", at + 60, "open") is None  # "open" has no cap: nothing to grant
    # A record claiming a longer life than its own tier allows is cut too.
    with open(grant_path(tree, "k"), "w") as handle:
        json.dump(dict(grant, expires_at=at + 10 * 24 * 3600), handle)
    assert grants.active(cfg, "k", at + 4 * 3600, "controlled") is None
    assert config.MAX_TTL == {"controlled": 14400, "restricted": 900, "root": 1800}


# -- the grant file: read without json; a clawgate 0.x JSON grant still honoured -------------------

def test_a_grant_written_as_json_before_the_upgrade_is_still_honoured(tree):
    tree.set_secret("k", b"v", tier="controlled")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    grant = _grant(tree, "k")
    with open(grant_path(tree, "k"), "w") as handle:
        json.dump(grant, handle)  # the format every grant had before issue 14
    result = tree.as_agent("broker", "get", "k")
    assert result.returncode == 0 and result.stdout == b"v"


@pytest.mark.parametrize("cut", [1, 10, -1, -2])
def test_a_cut_or_padded_grant_grants_nothing(tree, cut):
    tree.set_secret("k", b"v")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    with open(grant_path(tree, "k"), "rb") as handle:
        raw = handle.read()
    damaged = raw[:cut] if cut < 0 else raw + b"caller=x\n" * cut
    with open(grant_path(tree, "k"), "wb") as handle:
        handle.write(damaged)
    one_line_error(tree.as_agent("broker", "get", "k"), 3)


@pytest.mark.parametrize("damage", [b"not json", b"{}", b'{"name": "k"}', b"[]", b"null", b"\xff\xfe",
                                    b"name=k\n" * 5, b"{" * 100000, b"=\n=\n=\n=\n=\n", b"\n"])
def test_a_grant_that_cannot_be_read_is_no_grant_never_a_traceback(tree, damage):
    tree.set_secret("k", b"v")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    with open(grant_path(tree, "k"), "wb") as handle:
        handle.write(damage)
    one_line_error(tree.as_agent("broker", "get", "k"), 3)
