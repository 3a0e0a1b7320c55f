"""A code works once (invariant 4): reuse reads exactly like a wrong code, and of twenty real
`approve` processes racing one valid code exactly one wins."""

import subprocess
import time

import pytest

from coretools import audit_records, one_line_error, status, wrong_code_at
from clawgate import lockout

DENIED = "clawgate: code denied\n"
RACERS = 20


@pytest.mark.parametrize("as_agent", [True, False], ids=["agent", "owner"])
def test_a_code_used_twice_is_denied_like_a_wrong_code(tree, as_agent):
    tree.set_secret("k", b"v")
    code = tree.code()
    approve = (lambda c: tree.run("approve", "k", c, as_agent=True)) if as_agent else (
        lambda c: tree.owner_approve("k", c))
    assert approve(code).returncode == 0
    reused = approve(code)
    wrong = approve(wrong_code_at(tree.seed, time.time()))
    assert one_line_error(reused, 1) == one_line_error(wrong, 1) == DENIED
    assert reused.stdout == wrong.stdout == b""
    causes = [r.get("cause") for r in audit_records(tree) if r["event"] == "code" and r["result"] == "denied"]
    assert causes == ["reused", "wrong"]  # only the audit log tells them apart


def test_a_code_spent_on_one_name_does_not_open_another(tree):
    tree.set_secret("a", b"1")
    tree.set_secret("b", b"2")
    code = tree.code()
    assert tree.as_agent("approve", "a", code).returncode == 0
    assert one_line_error(tree.as_agent("approve", "b", code), 1) == DENIED
    assert one_line_error(tree.as_agent("approve", "@root", code), 1) == DENIED
    assert one_line_error(tree.as_agent("totp-validate", input=code.encode() + b"\n"), 1) == DENIED
    one_line_error(tree.as_agent("broker", "get", "b"), 3)


def test_an_earlier_steps_code_is_refused_once_a_later_one_was_accepted(tree):
    tree.set_secret("k", b"v")
    current, following = tree.code(), tree.code()  # steps s and s+1, both unspent
    assert tree.as_agent("approve", "k", following).returncode == 0
    assert one_line_error(tree.as_agent("approve", "k", current), 1) == DENIED


def _racers(tree, as_agent):
    """RACERS approve processes, each blocked reading its code from stdin (the barrier)."""
    procs = [subprocess.Popen([str(tree.libexec / "approve"), "k"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tree.env(as_agent))
             for _ in range(RACERS)]
    deadline = time.time() + 30
    while time.time() < deadline:  # wait until every one sits in read(2) on its stdin
        try:
            waiting = sum("pipe" in open(f"/proc/{p.pid}/wchan").read() for p in procs)
        except OSError:  # no /proc: a grace period has to do
            time.sleep(2)
            break
        if waiting == RACERS:
            break
        time.sleep(0.05)
    return procs


def _release(procs, code):
    data = code.encode() + b"\n"
    for p in procs:  # microseconds apart: all of them reach the gate together
        p.stdin.write(data)
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        results.append((p.returncode, out, err))
    return results


def test_twenty_owner_processes_racing_one_code_exactly_one_wins(tree):
    tree.set_secret("k", b"v")
    procs = _racers(tree, as_agent=False)
    results = _release(procs, tree.code())
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [1] * (RACERS - 1), results
    assert all(err == DENIED.encode() for code, _, err in results if code)
    records = audit_records(tree)
    assert [r["result"] for r in records if r["event"] == "code"].count("accepted") == 1
    assert len([r for r in records if r["event"] == "grant"]) == 1


def test_twenty_agent_processes_racing_one_code_exactly_one_wins(tree):
    """As the agent, each losing replay is also a failure: after the free ones it is locked out."""
    tree.set_secret("k", b"v")
    procs = _racers(tree, as_agent=True)
    results = _release(procs, tree.code())
    codes = sorted(code for code, _, _ in results)
    free = lockout.FREE_FAILURES + 1  # the sixth failure is still answered "denied", then locks
    assert codes == [0] + [1] * free + [5] * (RACERS - 1 - free), results
    assert len([r for r in audit_records(tree) if r["event"] == "grant"]) == 1
    assert status(tree)["failures"] == free
    assert tree.as_agent("broker", "get", "k").stdout == b"v"


def test_the_owners_code_in_argv_is_refused_and_not_spent(tree):
    """An argument shows in every user's ps: the agent could race the owner to spend it on @root."""
    tree.set_secret("k", b"v")
    code = tree.code()
    refused = tree.run("approve", "k", code)
    assert one_line_error(refused, 2).startswith("clawgate: as the owner, give the code at the prompt")
    assert not (tree.state / "grants" / "k").exists()
    assert tree.owner_approve("k", code).returncode == 0  # still unspent
