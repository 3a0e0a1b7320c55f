"""Bad input on every core program (empty, unknown verbs and options, huge, binary, newlines,
garbage on stdin): one `clawgate: ...` line of bounded length, the DESIGN exit code, no traceback."""

import pytest

from coretools import one_line_error
from installtree import Tree

HUGE = "x" * 100_000
BINARY = b"\xff\xfe\x80"
OWNER, AGENT = "owner", "agent"

# (program, args, stdin, who, exit code)
CASES = [
    ("broker", [], b"", AGENT, 2),
    ("broker", ["bogus"], b"", AGENT, 2),
    ("broker", ["--bogus"], b"", AGENT, 2),
    ("broker", ["get"], b"", AGENT, 2),
    ("broker", ["get", "a", "b"], b"", AGENT, 2),
    ("broker", ["get", HUGE], b"", AGENT, 2),
    ("broker", ["get", BINARY], b"", AGENT, 2),
    ("broker", ["get", "a\nb"], b"", AGENT, 2),
    ("broker", ["get", "nope"], b"", AGENT, 4),
    ("broker", ["list", "--bogus"], b"", AGENT, 2),
    ("broker", ["status", "--json", "x"], b"", OWNER, 2),
    ("broker", [HUGE], b"", OWNER, 2),
    ("approve", [], b"", AGENT, 2),
    ("approve", ["--bogus"], b"", AGENT, 2),
    ("approve", ["k", "123456", "extra"], b"", AGENT, 2),
    ("approve", ["k", "123456", "extra\n" + HUGE], b"", AGENT, 2),
    ("approve", [HUGE], b"", AGENT, 2),
    ("approve", [BINARY, "123456"], b"", AGENT, 2),
    ("approve", ["a\nb", "123456"], b"", AGENT, 2),
    ("approve", ["nope", "123456"], b"", AGENT, 4),
    ("approve", ["k", "--ttl", "forever"], b"", AGENT, 2),
    ("approve", ["k", "--ttl", HUGE], b"", AGENT, 2),
    ("approve", ["k"], b"", AGENT, 2),                          # no TTY, no code on stdin
    ("approve", ["k"], b"1" * 10_000, AGENT, 2),                # a code line far too long
    ("approve", ["k"], BINARY + b"\n", OWNER, 2),                # not the shape of a code: not counted
    ("approve", ["k", BINARY], b"", OWNER, 2),                 # the owner's code never in argv
    ("approve", ["k", HUGE], b"", OWNER, 2),
    ("revoke", [], b"", AGENT, 2),
    ("revoke", ["--bogus"], b"", AGENT, 2),
    ("revoke", ["--all", "k"], b"", AGENT, 2),
    ("revoke", [HUGE], b"", AGENT, 2),
    ("revoke", [BINARY], b"", AGENT, 2),
    ("revoke", ["ok", "a\nb"], b"", AGENT, 2),
    ("totp-validate", [], b"", AGENT, 2),
    ("totp-validate", ["bogus"], b"", AGENT, 2),
    ("totp-validate", [HUGE], b"", AGENT, 2),
    ("totp-validate", ["a\nb"], b"", AGENT, 2),
    ("totp-validate", [], b"9" * 10_000_000, OWNER, 2),
    ("totp-validate", [], BINARY + b"\n", OWNER, 2),
    ("totp-validate", [], b"\x00" * 6 + b"\n", OWNER, 2),
    ("totp-validate", ["--unlock"], b"", AGENT, 1),
    ("enroll", [], b"", OWNER, 2),                             # already enrolled
    ("enroll", [], b"", AGENT, 1),
    ("enroll", ["--rotate"], b"", AGENT, 1),
    ("enroll", ["bogus"], b"", OWNER, 2),
    ("enroll", [HUGE], b"", AGENT, 2),
    ("enroll", [BINARY], b"", OWNER, 2),
    ("enroll", ["--rotate", "--import"], b"", OWNER, 2),        # nothing on stdin
    ("enroll", ["--rotate", "--import"], b"not base32!\n", OWNER, 2),
    ("enroll", ["--rotate", "--import"], BINARY + b"\n", OWNER, 2),
    ("enroll", ["--rotate", "--import"], b"A" * 10_000, OWNER, 2),
    ("enroll", ["--rotate", "--import"], b"otpauth://totp/x?secret=AAAA&digits=9\n", OWNER, 2),
    ("secrets", [], b"", OWNER, 2),
    ("secrets", ["bogus"], b"", OWNER, 2),
    ("secrets", ["a\nb"], b"", OWNER, 2),
    ("secrets", [HUGE], b"", OWNER, 2),
    ("secrets", ["set"], b"", OWNER, 2),
    ("secrets", ["set", HUGE], b"v", OWNER, 2),
    ("secrets", ["set", BINARY], b"v", OWNER, 2),
    ("secrets", ["set", "k", "--tier", "secret"], b"v", OWNER, 2),
    ("secrets", ["set", "k", "--tier", HUGE], b"v", OWNER, 2),
    ("secrets", ["set", "x"], b"v", AGENT, 1),
    ("secrets", ["rm", "nope"], b"", OWNER, 4),
    ("secrets", ["tier", "nope", "open"], b"", OWNER, 4),
    ("secrets", ["tier", "k", "a\nb"], b"", OWNER, 2),
    ("secrets", ["import"], b"", OWNER, 2),
    ("secrets", ["import", "/nonexistent/file"], b"", OWNER, 2),
    ("secrets", ["import", "/"], b"", OWNER, 2),
    ("secrets", ["import", "/etc"], b"", OWNER, 2),
    ("secrets", ["import", "/dev/null"], b"", OWNER, 2),
    ("secrets", ["import", "/bad name"], b"", OWNER, 2),
    ("secrets", ["import", BINARY], b"", OWNER, 2),
    ("secrets", ["list", "--bogus"], b"", OWNER, 2),
    ("secrets", ["list"], b"", AGENT, 1),
    ("audit", ["bogus"], b"", OWNER, 2),
    ("audit", [HUGE], b"", OWNER, 2),
    ("audit", ["verify", "x"], b"", OWNER, 2),
    ("audit", ["a\nb"], b"", OWNER, 2),
    ("audit", [], b"", AGENT, 1),
    ("audit", ["verify"], b"", AGENT, 1),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    tree = Tree(tmp_path_factory.mktemp("cli"))
    tree.enroll_seed()
    tree.set_secret("k", b"the-value")
    return tree


def _id(case):
    prog, args, stdin, who, code = case
    shown = " ".join(a[:10].replace("\n", "\\n") if isinstance(a, str) else "<binary>" for a in args)
    return f"{who}:{prog} {shown}{' <stdin ' + str(len(stdin)) + 'B>' if stdin else ''}->{code}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_gets_one_line_and_the_right_exit_code(shared, case):
    prog, args, stdin, who, code = case
    result = shared.run(prog, *args, input=stdin, as_agent=who == AGENT)
    err = one_line_error(result, code)
    assert len(err) < 600
    assert b"the-value" not in result.stdout + result.stderr


def test_nothing_was_changed_by_all_that(shared):
    """The table above ran against one tree: the secret, its tier and the seed are as they were."""
    assert shared.owner_approve("k", shared.code()).returncode == 0
    assert shared.as_agent("broker", "get", "k").stdout == b"the-value"
    assert shared.run("audit", "verify").returncode == 0


@pytest.mark.parametrize("prog", ["approve", "totp-validate", "enroll", "secrets"])
def test_help_is_not_an_error(shared, prog):
    result = shared.run(prog, "--help")
    assert result.returncode == 0 and result.stdout.startswith(b"usage: clawgate ") and result.stderr == b""
