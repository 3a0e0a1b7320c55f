"""Invariant 8 (reading side): state is opened with O_NOFOLLOW and checked with fstat. A symlink
or FIFO planted in the state, a record owned by someone else or open to group/others, is refused
(exit 6) and never believed; writes replace a planted link instead of writing through it.
(The crash half of invariant 8 is tests/test_crash.py.)"""

import json
import os
import time

import pytest

from coretools import grant_path, one_line_error
from clawgate import seed, totp


def _outside(tree, name, data, mode=0o600):
    """A file outside the state, owned by the owner: what a planted link would point at."""
    path = tree.root / f"outside-{name}"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _grant_record(name):
    now = time.time()
    return json.dumps({"name": name, "tier": "restricted", "granted_at": now - 1, "expires_at": now + 600,
                       "caller": "forger"}).encode()


def _plant_link(at, target):
    if os.path.lexists(at):
        os.unlink(at)
    os.symlink(target, at)


@pytest.fixture
def t(tree):
    tree.set_secret("k", b"the-value")
    return tree


def test_symlinked_grant_is_refused(t):
    _plant_link(grant_path(t, "k"), _outside(t, "grant", _grant_record("k")))
    result = t.as_agent("broker", "get", "k")
    assert "cannot open safely" in one_line_error(result, 6)
    assert result.stdout == b""


def test_symlinked_secret_is_refused(t):
    t.set_secret("open-one", b"fine", tier="open")
    _plant_link(t.state / "secrets" / "open-one", _outside(t, "secret", b"STOLEN FILE"))
    result = t.as_agent("broker", "get", "open-one")
    one_line_error(result, 6)
    assert b"STOLEN" not in result.stdout + result.stderr


def test_symlinked_tier_cannot_open_a_restricted_secret(t):
    _plant_link(t.state / "tiers" / "k", _outside(t, "tier", b"open\n"))
    result = t.as_agent("broker", "get", "k")
    one_line_error(result, 6)
    assert result.stdout == b""


def test_symlinked_seed_is_refused_even_with_a_matching_code(t):
    forged = totp.Params(totp.new_secret())
    _plant_link(t.state / "totp-seed", _outside(t, "seed", seed._encode(forged)))
    one_line_error(t.as_agent("approve", "k", totp.code_at(forged, time.time())), 6)
    assert not os.path.exists(grant_path(t, "k"))


@pytest.mark.parametrize("name", ["totp.json", "totp.lock"])
def test_symlinked_gate_state_is_refused(t, name):
    clean = json.dumps({"last_step": -1, "failures": 0, "last_failure": 0.0, "locked_until": 0.0}).encode()
    target = _outside(t, name, clean)
    _plant_link(t.state / name, target)
    one_line_error(t.as_agent("approve", "k", t.code()), 6)
    assert not os.path.exists(grant_path(t, "k"))
    assert target.read_bytes() == clean  # nothing written through the link


def test_symlinked_audit_log_is_refused_and_not_written_through(t):
    target = _outside(t, "audit", b"")
    _plant_link(t.state / "audit.log", target)
    one_line_error(t.as_agent("broker", "get", "k"), 6)
    assert target.read_bytes() == b""


@pytest.mark.parametrize("sub", ["grants", "secrets", "tiers"])
def test_symlinked_state_subdirectory_is_refused(t, sub):
    assert t.as_agent("approve", "k", t.code()).returncode == 0
    copy = t.root / f"copy-{sub}"
    os.rename(t.state / sub, copy)  # same records, reached through a link: still refused
    os.symlink(copy, t.state / sub)
    for prog, args in [("broker", ("get", "k")), ("broker", ("list",)), ("approve", ("k", t.code())),
                       ("revoke", ("k",))]:
        assert "not a directory" in one_line_error(t.as_agent(prog, *args), 6)


def test_symlinked_state_dir_is_refused(t):
    real = t.root / "real-state"
    os.rename(t.state, real)
    os.symlink(real, t.state)
    assert "not a directory" in one_line_error(t.as_agent("broker", "get", "k"), 6)


@pytest.mark.parametrize("where", ["grants/k", "secrets/k", "tiers/k", "totp.json", "totp-seed"])
def test_a_planted_fifo_is_refused_without_hanging(t, where):
    path = t.state / where
    if path.exists():
        path.unlink()
    os.mkfifo(path, 0o600)
    result = t.as_agent("approve", "k", t.code()) if where.startswith("totp") else t.as_agent("broker", "get", "k")
    assert "not a regular file" in one_line_error(result, 6)


@pytest.mark.parametrize("writer", ["approve", "secrets set"])
def test_writes_replace_a_planted_link_instead_of_following_it(t, writer):
    target = _outside(t, "victim", b"untouched")
    at = grant_path(t, "k") if writer == "approve" else t.state / "secrets" / "k"
    _plant_link(at, target)
    if writer == "approve":
        assert t.as_agent("approve", "k", t.code()).returncode == 0
    else:
        assert t.run("secrets", "set", "k", "--force", input=b"new").returncode == 0
    assert target.read_bytes() == b"untouched"
    assert not os.path.islink(at) and os.path.isfile(at)


# -- modes and owners ----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["grants/k", "secrets/k", "tiers/k", "totp.json", "totp-seed", "audit.log"])
@pytest.mark.parametrize("mode", [0o620, 0o640, 0o604, 0o602, 0o666])
def test_a_record_open_to_group_or_others_is_refused(t, where, mode):
    t.run("secrets", "tier", "k", "controlled")
    assert t.as_agent("approve", "k", t.code()).returncode == 0
    os.chmod(t.state / where, mode)
    result = t.as_agent("broker", "get", "k") if not where.startswith("totp") else t.as_agent("approve", "k", t.code())
    one_line_error(result, 6)
    assert result.stdout == b""


@pytest.mark.parametrize("sub", [".", "grants", "secrets", "tiers"])
@pytest.mark.parametrize("mode", [0o770, 0o750, 0o705, 0o711])
def test_a_state_directory_open_to_others_is_refused(t, sub, mode):
    os.chmod(t.state / sub, mode)
    assert "too open" in one_line_error(t.as_agent("broker", "get", "k"), 6)


@pytest.mark.root
@pytest.mark.parametrize("where", ["grants/k", "secrets/k", "tiers/k", "totp.json", "totp-seed", "audit.log"])
def test_a_record_written_by_someone_else_is_refused(t, where):
    """Root only: a file owned by another user (here the agent's uid) is never believed."""
    t.run("secrets", "tier", "k", "controlled")
    assert t.as_agent("approve", "k", t.code()).returncode == 0
    os.chown(t.state / where, t.agent_uid, -1)
    result = t.as_agent("broker", "get", "k") if not where.startswith("totp") else t.as_agent("approve", "k", t.code())
    err = one_line_error(result, 6)
    assert f"uid {t.agent_uid}" in err or "owner's" in err
    assert result.stdout == b""


@pytest.mark.root
def test_a_forged_grant_written_by_the_agent_is_refused(t):
    with open(grant_path(t, "k"), "wb") as handle:
        handle.write(_grant_record("k"))
    os.chmod(grant_path(t, "k"), 0o600)
    os.chown(grant_path(t, "k"), t.agent_uid, -1)
    result = t.as_agent("broker", "get", "k")
    one_line_error(result, 6)
    assert result.stdout == b""
