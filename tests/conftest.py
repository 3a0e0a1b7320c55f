import os

import pytest

from installtree import Tree


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (real users, real sudo); skipped otherwise")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates users and goes through the real sudo (CI runs it)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tree(tmp_path):
    """A fresh install tree with an enrolled seed; the current user is the owner."""
    t = Tree(tmp_path)
    t.enroll_seed()
    return t


@pytest.fixture
def bare_tree(tmp_path):
    """A fresh install tree with no seed yet."""
    return Tree(tmp_path)
