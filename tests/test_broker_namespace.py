"""Invariant 2: broker serves only the secrets namespace: never the TOTP seed, a grant record,
or a path outside the store. Names are validated (exit 2) before anything touches a path, and
the programs that delete by name (revoke, secrets rm) refuse the same names."""

import json

import pytest

from coretools import one_line_error
from installtree import Tree
from clawgate import names, totp
from clawgate.errors import USAGE, ClawgateError
from clawgate.store import FileStore

BAD_NAMES = [
    "../x", "../totp-seed", "../totp.json", "../grants/k", "../audit.log", "a/../../totp-seed",
    "../../../../../etc/passwd", "/etc/passwd", "/", "@root", "@anything", "a\n", "\na", "a\r",
    "x" * 129, "", ".", "..", ".hidden", "a/.", "a/..", "a//b", "a/", "/a", "-x", "_x", "a b", "a\\b",
    "a%b", "grants%k", "%2e%2e", "a\tb", "k\x7f", "ключ", "a/" + "b" * 127, "~", "*", "a:b",
]


def _plant(tree):
    tree.set_secret("k", b"the-value")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    return tree


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """One tree for the read-only attacks: a granted secret, so a grant record and the seed both
    exist to be stolen. Tests that change the store use `fresh` instead."""
    tree = Tree(tmp_path_factory.mktemp("namespace"))
    tree.enroll_seed()
    return _plant(tree)


@pytest.fixture
def fresh(tree):
    return _plant(tree)


def _forbidden_bytes(tree):
    """Bytes that must never come out of broker: the seed (raw and base32) and the grant record."""
    seed = tree.seed.secret
    return [seed, totp.to_base32(seed).encode(), (tree.state / "grants" / "k").read_bytes(),
            (tree.state / "totp-seed").read_bytes()]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
@pytest.mark.parametrize("as_agent", [True, False], ids=["agent", "owner"])
def test_broker_refuses_names_outside_the_namespace(planted, name, as_agent):
    result = planted.run("broker", "get", name, as_agent=as_agent)
    err = one_line_error(result, 2)
    assert "invalid secret name" in err
    assert result.stdout == b""
    assert not any(secret in result.stderr for secret in _forbidden_bytes(planted))


def test_nul_is_refused_by_the_validator():
    # argv cannot carry NUL, so the validator itself is attacked.
    for name in ("a\0", "\0", "a\0/../totp-seed", "k\0.json"):
        assert not names.is_valid(name)
        with pytest.raises(ClawgateError) as err:
            names.check(name)
        assert err.value.code == USAGE and "\0" not in err.value.message


def test_the_file_store_validates_names_itself(planted):
    """Second layer: even a caller that skipped names.check cannot walk out of secrets/."""
    store = FileStore(planted.config())
    for name in ("../totp-seed", "../grants/k", "/etc/passwd", "..", "a\0"):
        for operation in (store.get, store.delete, lambda n: store.put(n, b"x")):
            with pytest.raises(ClawgateError) as err:
                operation(name)
            assert err.value.code == USAGE
    assert (planted.state / "totp-seed").exists() and (planted.state / "grants" / "k").exists()


@pytest.mark.parametrize("name", ["totp-seed", "totp.json", "totp.lock", "audit.log", "grants", "tiers",
                                  "secrets", "grants/k", "k.json", "state"])
def test_names_of_state_files_are_just_missing_secrets(planted, name):
    result = planted.as_agent("broker", "get", name)
    err = one_line_error(result, 4)
    assert err == f"clawgate: {name}: no such secret\n"
    assert result.stdout == b""


def test_a_secret_named_like_the_seed_is_its_own_value_not_the_seed(fresh):
    fresh.set_secret("totp-seed", b"decoy", tier="open")
    assert fresh.as_agent("broker", "get", "totp-seed").stdout == b"decoy"
    assert (fresh.state / "totp-seed").read_bytes() != b"decoy"  # the real seed is untouched


def test_name_length_limit_is_128(fresh):
    longest = "n" * 128
    fresh.set_secret(longest, b"long", tier="open")
    assert fresh.as_agent("broker", "get", longest).stdout == b"long"
    one_line_error(fresh.as_agent("broker", "get", longest + "n"), 2)


def test_nested_names_stay_inside_the_store(fresh):
    fresh.set_secret("team/db/password", b"nested", tier="open")
    assert fresh.as_agent("broker", "get", "team/db/password").stdout == b"nested"
    assert (fresh.state / "secrets" / "team%db%password").is_file()
    one_line_error(fresh.as_agent("broker", "get", "team/db"), 4)


def test_list_and_status_show_only_secret_names(planted):
    listed = json.loads(planted.as_agent("broker", "list", "--json").stdout)
    assert [row["name"] for row in listed] == ["k"]
    for verb in (["list"], ["list", "--json"], ["status"], ["status", "--json"]):
        result = planted.as_agent("broker", *verb)
        assert result.returncode == 0
        assert not any(secret in result.stdout + result.stderr for secret in _forbidden_bytes(planted))
        assert b"the-value" not in result.stdout


@pytest.mark.parametrize("name", ["../totp-seed", "../totp.json", "../audit.log", "../grants", "/etc/passwd",
                                  "a\n", "x" * 129])
def test_revoke_and_rm_cannot_delete_outside_their_directory(planted, name):
    before = {p.name for p in planted.state.iterdir()}
    one_line_error(planted.as_agent("revoke", name), 2)
    one_line_error(planted.as_agent("revoke", "k", name), 2)  # one bad name: nothing at all is revoked
    one_line_error(planted.run("secrets", "rm", name), 2)
    one_line_error(planted.run("secrets", "set", name, input=b"x"), 2)
    one_line_error(planted.as_agent("approve", name, "123456"), 2)
    assert {p.name for p in planted.state.iterdir()} == before
    assert (planted.state / "grants" / "k").exists()
    assert planted.as_agent("broker", "get", "k").stdout == b"the-value"
