"""The store contract, one suite for every backend: `file`, `keychain` through the fake security,
and `openbao` against a real OpenBao dev server (one for the module, a fresh prefix per test).

Each test runs once per backend (the `backend` fixture's params); add a backend there and it
must pass all of this. What a backend promises (store/__init__.py): get(name) -> the exact
bytes or NoSuchSecret (exit 4); put(name, value) for any bytes; delete(name) -> whether
something was removed; names() -> sorted secret names and nothing else; every name validated
(exit 2) before it is used; the TOTP seed never reachable through any of them.
"""

import threading
from typing import NamedTuple

import pytest

from baoserver import DevServer
from installtree import Tree
from keychainfake import LOG, LOG_VAR, KeychainTree
from clawgate import config, seed, totp
from clawgate.errors import ClawgateError
from clawgate.store import NoSuchSecret, open_store

BACKENDS = ["file", "keychain", "openbao"]

PEM = (b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
       b"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
       b"QyNTUxOQAAACBpbmZvcm1hdGlvbiBvbmx5OyBub3QgYSByZWFsIGtleSBhdCBhbGwuAAAA\n"
       b"-----END OPENSSH PRIVATE KEY-----\n")
# Values chosen against the ways a keychain driver goes wrong: -w prints some values as hex
# (deadbeef, DE AD BE EF), -g prints `"text"` or `0xHEX  "escaped"` (quotes, backslashes,
# NUL, newlines), -U without data keeps the old bytes (empty), one -i line holds 4095 bytes.
VALUES = {
    "hex-text": b"deadbeef",
    "hex-bytes": bytes.fromhex("deadbeef"),
    "0x41": b"0x41",
    "A": b"A",
    "pem": PEM,
    "nul": b"before\x00after\x00",
    "quote-backslash": b'say "hi" \\ and \\" and \'',
    "empty": b"",
    "newline": b"\n",
    "trailing-newline": b"sk-live-token\n",
    "spaces": b"  padded value  ",
    "utf8": "pässwörd ✓ 密码".encode(),
    "all-bytes": bytes(range(256)),
    "looks-like-output": b'password: "fake"',
    "large": bytes((i * 7 + 3) % 256 for i in range(200_000)),
}


class Backend(NamedTuple):
    kind: str
    tree: Tree
    cfg: config.Config
    store: object

    def remember(self, *values: bytes) -> None:
        if self.kind == "keychain":
            LOG.remember(*values)


@pytest.fixture(scope="module")
def bao_dev(tmp_path_factory):
    server = DevServer(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, monkeypatch) -> Backend:
    if request.param == "openbao":
        owner = request.getfixturevalue("bao_dev").owner(f"clawgate/{tmp_path.name}")
        tree = Tree(tmp_path, store="openbao", extra_config=owner.config())
        owner.give(tree.state)
        result = tree.run("secrets", "init")
        assert result.returncode == 0, result.stderr
    elif request.param == "keychain":
        monkeypatch.setenv(LOG_VAR, str(LOG.path))  # in-process stores run the fake from here
        tree = KeychainTree(tmp_path)
        tree.init()
    else:
        tree = Tree(tmp_path)
        assert tree.run("secrets", "init").returncode == 0
    cfg = tree.config()
    return Backend(request.param, tree, cfg, open_store(cfg))


@pytest.mark.parametrize("label", sorted(VALUES))
def test_every_value_round_trips_exactly(backend, label):
    value = VALUES[label]
    backend.remember(value)
    backend.store.put("api/key", value)
    assert backend.store.get("api/key") == value
    assert open_store(backend.cfg).get("api/key") == value  # a fresh instance, as the next program would


def test_put_replaces_whatever_was_there(backend):
    sequence = [VALUES["large"], b"small", VALUES["all-bytes"] * 900, b"", VALUES["pem"], VALUES["large"][::-1], b"x"]
    backend.remember(*sequence)
    for value in sequence:
        backend.store.put("token", value)
        assert backend.store.get("token") == value


def test_a_missing_secret_is_no_such_secret_exit_4(backend):
    with pytest.raises(NoSuchSecret) as caught:
        backend.store.get("never-stored")
    assert caught.value.code == 4


def test_exists_and_require_agree_with_get(backend):
    assert backend.store.exists("api/key") is False
    with pytest.raises(NoSuchSecret) as caught:
        backend.store.require("api/key")
    assert caught.value.code == 4
    backend.remember(b"present")
    backend.store.put("api/key", b"present")
    assert backend.store.exists("api/key") is True
    backend.store.require("api/key")
    backend.store.delete("api/key")
    assert backend.store.exists("api/key") is False


def test_init_can_be_repeated(backend):
    backend.remember(b"value kept across inits")
    backend.store.put("kept", b"value kept across inits")
    backend.store.init()
    backend.store.init()
    assert backend.store.get("kept") == b"value kept across inits"


def test_the_root_seed_is_kept_apart_from_the_seed(backend):
    params, root = totp.Params(totp.new_secret()), totp.Params(totp.new_secret())
    backend.remember(params.secret, totp.to_base32(params.secret), root.secret, totp.to_base32(root.secret))
    assert seed.load(backend.cfg) is None and seed.load(backend.cfg, root=True) is None
    seed.save(backend.cfg, params)
    seed.save(backend.cfg, root, root=True)
    assert (seed.load(backend.cfg), seed.load(backend.cfg, root=True)) == (params, root)
    assert backend.store.names() == []


def test_delete_removes_once(backend):
    backend.remember(b"short-lived")
    backend.store.put("gone", b"short-lived")
    assert backend.store.delete("gone") is True
    with pytest.raises(NoSuchSecret):
        backend.store.get("gone")
    assert backend.store.delete("gone") is False
    assert "gone" not in backend.store.names()


def test_delete_of_a_large_value_leaves_nothing_behind(backend):
    backend.remember(VALUES["large"])
    backend.store.put("big", VALUES["large"])
    assert backend.store.delete("big") is True
    backend.store.put("big", b"again")
    assert backend.store.get("big") == b"again"


def test_names_are_sorted_secret_names_only(backend):
    for name in ("zeta", "alpha", "team/db.password", "a-b_c.d"):
        backend.store.put(name, b"value-" + name.encode())
    backend.store.put("large/one", VALUES["large"])  # split by the keychain: its parts are no names
    backend.remember(VALUES["large"], *(b"value-" + n.encode() for n in ("zeta", "alpha", "team/db.password")))
    seed.save(backend.cfg, totp.Params(totp.new_secret()))
    assert backend.store.names() == ["a-b_c.d", "alpha", "large/one", "team/db.password", "zeta"]
    backend.store.delete("alpha")
    assert backend.store.names() == ["a-b_c.d", "large/one", "team/db.password", "zeta"]


def test_an_empty_store_lists_nothing(backend):
    assert backend.store.names() == []


BAD_NAMES = ["", "../x", "a/../b", "a//b", "/abs", "@root", "x\n", "a b", "a" * 129, "-flag", ".hidden", "a/", "é"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_every_operation_validates_the_name_first(backend, name):
    for operation in (backend.store.get, backend.store.exists, backend.store.require, backend.store.delete,
                      lambda n: backend.store.put(n, b"value")):
        with pytest.raises(ClawgateError) as caught:
            operation(name)
        assert caught.value.code == 2, name
    assert backend.store.names() == []


@pytest.mark.parametrize("name", ["clawgate-totp", "totp-seed", "seed", "clawgate-totp/seed", "clawgate-parts"])
def test_the_seed_is_not_reachable_by_any_secret_name(backend, name):
    params = totp.Params(totp.new_secret())
    backend.remember(params.secret, totp.to_base32(params.secret))
    seed.save(backend.cfg, params)
    with pytest.raises(NoSuchSecret):
        backend.store.get(name)
    assert seed.load(backend.cfg) == params
    assert backend.store.names() == []


def test_a_secret_named_like_the_seed_does_not_touch_the_seed(backend):
    params = totp.Params(totp.new_secret())
    backend.remember(params.secret, totp.to_base32(params.secret), b"not the seed")
    seed.save(backend.cfg, params)
    backend.store.put("seed", b"not the seed")
    backend.store.put("totp-seed", b"not the seed")
    assert seed.load(backend.cfg) == params
    assert backend.store.get("seed") == b"not the seed"


def test_the_programs_serve_exact_bytes(backend):
    """secrets set --raw in, broker get out (as the agent, tier open): no byte added or lost."""
    for label in ("hex-text", "hex-bytes", "pem", "nul", "quote-backslash", "trailing-newline"):
        value = VALUES[label]
        backend.remember(value)
        backend.tree.set_secret(f"v/{label}", value, tier="open")
        got = backend.tree.as_agent("broker", "get", f"v/{label}")
        assert got.returncode == 0, got.stderr
        assert got.stdout == value, label


def test_concurrent_writers_leave_one_whole_value(backend):
    values = [VALUES["large"], b"small-one", VALUES["all-bytes"] * 300, b"small-two"]
    backend.remember(*values)
    errors = []

    def write(value: bytes) -> None:
        try:
            open_store(backend.cfg).put("contended", value)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(value,)) for value in values * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert backend.store.get("contended") in values


def test_no_secret_reached_the_fake_security_argv():
    """Over every keychain test so far in this run: values, their hex, the keychain password."""
    assert LOG.secrets, "the keychain tests remembered nothing: is the fixture in use?"
    assert LOG.leaks() == [], LOG.leaks()
