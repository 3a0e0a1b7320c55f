"""`secrets set` and `secrets rm` fail closed on order (issue 14, item 8): interrupted between
their steps, they leave a secret no more reachable than before, never an `open` tier or a live
grant for a value that changed or a name that a later `set` would inherit.

The interruption is a store whose put/delete raises, in the real program loaded in-process.
"""

import time
from types import SimpleNamespace

import pytest

from clawgate import grants, tiers
from clawgate.store import open_store
from coretools import context
from installtree import load_program


class Crash(Exception):
    pass


class CrashingStore:
    """The real store, except that changing a value is interrupted."""

    def __init__(self, real):
        self._real = real

    def get(self, name):
        return self._real.get(name)

    def names(self):
        return self._real.names()

    def put(self, name, value):
        raise Crash(name)

    def delete(self, name):
        raise Crash(name)


@pytest.fixture
def program(tree, monkeypatch):
    module = load_program("secrets")
    monkeypatch.setattr(module, "open_store", lambda cfg: CrashingStore(open_store(cfg)))
    monkeypatch.setattr(module, "read_value", lambda name, raw: b"new value")
    return module


def _grant(tree, name):
    cfg = tree.config()
    now = time.time()
    grants.write(cfg, grants.Grant(name, "controlled", now, now + 600, tree.agent))
    assert grants.active(cfg, name, now + 1) is not None


def test_an_interrupted_rm_has_revoked_the_grant_and_the_tier_first(tree, program):
    tree.set_secret("k", b"v", tier="controlled")
    _grant(tree, "k")
    with pytest.raises(Crash):
        program.remove(context(tree, "owner"), SimpleNamespace(name="k", force=True))
    cfg = tree.config()
    assert grants.active(cfg, "k", time.time()) is None
    assert tiers.get(cfg, "k") == tiers.DEFAULT


def args(tier):
    """`secrets set k --tier TIER --force`: the name exists, so only --force lets it be set without a terminal."""
    return SimpleNamespace(name="k", raw=False, tier=tier, force=True, allow_empty=False, use_only=False)


def test_an_interrupted_set_to_a_stricter_tier_has_tightened_it_first(tree, program):
    tree.set_secret("k", b"v", tier="open")
    with pytest.raises(Crash):
        program.set_secret(context(tree, "owner"), args(tier="restricted"))
    assert tiers.get(tree.config(), "k") == "restricted"


def test_an_interrupted_set_to_a_looser_tier_has_not_loosened_it(tree, program):
    tree.set_secret("k", b"v", tier="restricted")
    with pytest.raises(Crash):
        program.set_secret(context(tree, "owner"), args(tier="open"))
    assert tiers.get(tree.config(), "k") == "restricted"


def test_a_new_secret_does_not_inherit_a_grant_or_tier_left_behind(tree, program):
    cfg = tree.config()
    tiers.set(cfg, "k", "open")  # what an rm interrupted by the old order left
    _grant(tree, "k")
    with pytest.raises(Crash):
        program.set_secret(context(tree, "owner"), args(tier=None))
    assert grants.active(cfg, "k", time.time()) is None
    assert tiers.get(cfg, "k") == tiers.DEFAULT
