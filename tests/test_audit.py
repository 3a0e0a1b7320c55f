"""Invariant 9: every decision is in the hash-chained audit log, and `audit verify` names the line
that was edited, deleted or moved. Appending reads only the log's tail."""

import os
import subprocess
import sys
import time

import pytest

from coretools import audit_records, one_line_error, wrong_code_at
from clawgate import audit


@pytest.fixture
def logged(tree):
    """A tree whose log holds a dozen records of real activity."""
    tree.set_secret("k", b"v")
    tree.set_secret("pub", b"p", tier="open")
    tree.as_agent("broker", "get", "k")
    tree.as_agent("approve", "k", wrong_code_at(tree.seed, time.time()))
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    for _ in range(3):
        tree.as_agent("broker", "get", "k")
        tree.as_agent("broker", "get", "pub")
    tree.as_agent("revoke", "k")
    return tree


def _lines(tree):
    return (tree.state / "audit.log").read_bytes().splitlines(keepends=True)


def _rewrite(tree, lines):
    (tree.state / "audit.log").write_bytes(b"".join(lines))


def _verify(tree):
    return tree.run("audit", "verify")


def test_an_intact_log_verifies(logged):
    result = _verify(logged)
    count = len(_lines(logged))
    assert count >= 12
    assert result.returncode == 0 and result.stdout == f"clawgate: audit log intact ({count} records)\n".encode()


@pytest.mark.parametrize("index", [0, 5, -1])
def test_an_edited_line_is_named(logged, index):
    lines = _lines(logged)
    edited = lines[index].replace(b'"caller":"', b'"caller":"someone-else-', 1)
    assert edited != lines[index]
    lines[index] = edited
    _rewrite(logged, lines)
    number = index % len(lines) + 1
    result = _verify(logged)
    assert result.returncode == 1
    assert result.stdout == (f"clawgate: audit.log line {number}: hash does not match: "
                             "this line (or the hash of the one before) was edited\n").encode()


def test_an_edit_that_recomputes_its_own_hash_is_caught_on_the_next_line(logged):
    lines = _lines(logged)
    seq, prefix, _ = audit._parse_line(lines[3].rstrip(b"\n"))
    forged = prefix.replace(b'"caller":"', b'"caller":"x', 1)
    previous = audit._parse_line(lines[2].rstrip(b"\n"))[2]
    lines[3] = forged + b',"hash":"' + audit._chain(previous, forged) + b'"}\n'
    _rewrite(logged, lines)
    result = _verify(logged)
    assert result.returncode == 1 and b"audit.log line 5: hash does not match" in result.stdout


@pytest.mark.parametrize("index", [0, 4])
def test_a_deleted_line_is_named(logged, index):
    lines = _lines(logged)
    del lines[index]
    _rewrite(logged, lines)
    result = _verify(logged)
    assert result.returncode == 1
    assert result.stdout == (f"clawgate: audit.log line {index + 1}: seq {index + 2} follows seq {index}: "
                             "lines deleted (or moved) before it\n").encode()


def test_swapped_lines_are_named(logged):
    lines = _lines(logged)
    lines[6], lines[7] = lines[7], lines[6]
    _rewrite(logged, lines)
    result = _verify(logged)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        b"clawgate: audit.log line 7: seq 8 follows seq 6: lines deleted (or moved) before it",
        b"clawgate: audit.log line 8: seq 7 comes after seq 8: lines reordered or repeated",
    ]


def test_a_line_moved_to_the_end_is_named_twice(logged):
    lines = _lines(logged)
    lines.append(lines.pop(2))
    _rewrite(logged, lines)
    result = _verify(logged)
    assert result.returncode == 1
    assert [line.split(b":")[1] for line in result.stdout.splitlines()] == [
        b" audit.log line 3", f" audit.log line {len(lines)}".encode()]


def test_a_repeated_line_is_named(logged):
    lines = _lines(logged)
    lines.insert(5, lines[4])
    _rewrite(logged, lines)
    result = _verify(logged)
    assert result.stdout == b"clawgate: audit.log line 6: seq 5 comes after seq 5: lines reordered or repeated\n"


def test_an_inserted_line_is_named(logged):
    lines = _lines(logged)
    lines.insert(3, b'{"seq":4,"event":"get","name":"k","result":"ok"}\n')
    _rewrite(logged, lines)
    result = _verify(logged)
    assert result.returncode == 1 and result.stdout.startswith(b"clawgate: audit.log line 4: ")


def test_verify_and_show_are_for_the_owner_only(logged):
    for args in (("verify",), ("show",), ()):
        assert "only the owner" in one_line_error(logged.as_agent("audit", *args), 1)


def test_appending_reads_only_the_tail(tree):
    """Build a log of several MB, then count the bytes one append reads (/proc/self/io rchar)."""
    path = str(tree.state / "audit.log")
    uid = tree.config().owner.uid
    for _ in range(200):
        audit.append(path, uid, "pad", [(f"filler{j}", "x" * 4_000) for j in range(10)], time.time())
    for i in range(3):
        audit.append(path, uid, "small", [("i", i)], time.time())
    assert os.path.getsize(path) > 8_000_000
    if not os.path.exists("/proc/self/io"):
        pytest.skip("needs /proc/self/io to count bytes read")

    def rchar():
        with open("/proc/self/io") as handle:
            return int(next(line for line in handle if line.startswith("rchar:")).split()[1])

    before = rchar()
    audit.append(path, uid, "measured", [("i", 1)], time.time())
    read = rchar() - before
    assert read < 64 * 1024, f"one append read {read} bytes of a {os.path.getsize(path)}-byte log"
    count, problems = audit.verify_lines(audit.read_lines(path, uid))
    assert problems == [] and count == len(audit_records(tree))


def test_append_continues_the_chain_across_processes_and_a_missing_final_newline(tree):
    path = tree.state / "audit.log"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # a crash after the record but before "\n"
    tree.as_agent("broker", "get", "nope")
    assert _verify(tree).returncode == 0


def test_a_damaged_last_line_stops_every_audited_action(tree):
    tree.set_secret("pub", b"p", tier="open")
    with open(tree.state / "audit.log", "ab") as handle:
        handle.write(b'{"seq":99,"garbage"}\n')
    result = tree.as_agent("broker", "get", "pub")
    assert "last line is damaged" in one_line_error(result, 6)
    assert result.stdout == b""  # fail closed: no record, no value


def test_every_decision_is_recorded(tree):
    tree.set_secret("k", b"v")
    tree.set_secret("pub", b"p", tier="open")
    tree.as_agent("broker", "get", "k")                                    # get denied (no grant)
    tree.as_agent("broker", "get", "nope")                                 # get missing
    tree.as_agent("approve", "k", "12")                                    # malformed code: not counted
    tree.as_agent("approve", "k", tree.code())                             # accepted + grant
    tree.as_agent("approve", "k", tree.spent_code())                       # reused
    tree.as_agent("broker", "get", "k")                                    # get ok
    tree.as_agent("broker", "get", "pub")                                  # get ok (open)
    tree.as_agent("revoke", "k")                                           # revoke
    tree.as_agent("revoke", "k")                                           # revoke: nothing there
    tree.as_agent("secrets", "set", "x", input=b"v")                       # owner-only: denied
    for _ in range(5):
        tree.as_agent("approve", "k", wrong_code_at(tree.seed, time.time()))   # wrong, then lockout
    tree.as_agent("approve", "k", "000000")                                # refused: locked
    tree.run("totp-validate", "--unlock")                                  # unlock
    tree.run("secrets", "tier", "k", "controlled")
    tree.run("secrets", "rm", "pub", "--force")
    got = [(r["event"], r.get("result") or r.get("cause") or "", r.get("role")) for r in audit_records(tree)]
    expected = [
        ("set", "", "owner"), ("set", "", "owner"),
        ("get", "denied", "agent"), ("get", "missing", "agent"),
        ("code", "denied", "agent"), ("code", "accepted", "agent"), ("grant", "", "agent"),
        ("code", "denied", "agent"), ("get", "ok", "agent"), ("get", "ok", "agent"),
        ("revoke", "revoked", "agent"), ("revoke", "no grant", "agent"), ("denied", "owner only", "agent"),
        ("code", "denied", "agent"), ("code", "denied", "agent"), ("code", "denied", "agent"),
        ("code", "denied", "agent"), ("code", "denied", "agent"), ("lockout", "", "agent"), ("code", "locked", "agent"),
        ("unlock", "", "owner"), ("tier", "", "owner"), ("rm", "", "owner"),
    ]
    assert got[1:] == expected  # got[0] is the enrolment
    assert got[0][0] == "enroll"
    causes = [r.get("cause") for r in audit_records(tree) if r["event"] == "code" and r["result"] == "denied"]
    assert causes[:2] == ["malformed", "reused"] and set(causes[2:]) == {"wrong"}
    grant = next(r for r in audit_records(tree) if r["event"] == "grant")
    assert (grant["name"], grant["tier"], grant["ttl"]) == ("k", "restricted", 900)
    assert _verify(tree).returncode == 0


def test_a_write_that_fails_half_way_leaves_no_torn_line(tree):
    """A file-size limit (sudo passes rlimits on) cut a line in two, blocking every later append."""
    import resource

    log = tree.state / "audit.log"
    size = log.stat().st_size

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, size + 20))

    proc = subprocess.run([str(tree.libexec / "broker"), "get", "nothing-here"], capture_output=True,
                          env=tree.env(True), preexec_fn=limit)
    assert proc.returncode == 6 and b"file-size limit" in proc.stderr, proc.stderr
    assert log.stat().st_size == size
    assert tree.run("audit", "verify").returncode == 0


def test_append_cut_short_by_the_disk_is_rolled_back(tree):
    """Below the program's own check: audit.append itself never leaves half a line."""
    import resource

    log = tree.state / "audit.log"
    size = log.stat().st_size
    code = (f"import sys; sys.path.insert(0, {str(tree.libexec / 'lib')!r})\n"
            "from clawgate import audit\n"
            f"audit.append({str(log)!r}, {os.geteuid()}, 'get', [('name', 'x' * 500)], 0.0)\n")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, size + 20))

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, preexec_fn=limit)
    assert proc.returncode != 0 and b"cannot write the audit log" in proc.stderr, proc.stderr
    assert log.stat().st_size == size
    assert tree.run("audit", "verify").returncode == 0
