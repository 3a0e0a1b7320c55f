import os

import pytest

from installtree import Tree


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (real users, real sudo); skipped otherwise")
    # The owner's side refuses a lowered priority (guard._usual_priority): a runner started under
    # `nice` would pass it to every program the tests start. Root puts it back.
    if os.geteuid() == 0 and os.getpriority(os.PRIO_PROCESS, 0) > 0:
        os.setpriority(os.PRIO_PROCESS, 0, 0)


ROOT_REASON = "need root (real users, the real installer and sudo; CI runs them as root)"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=ROOT_REASON)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    """One line that says why tests were skipped (make test runs -q, which lists no reasons)."""
    reasons: "dict[str, int]" = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        grouped = sorted(reasons.items(), key=lambda item: -item[1])
        terminalreporter.write_line(f"{sum(reasons.values())} skipped: " + "; ".join(f"{n} {why}" for why, n in grouped))


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
